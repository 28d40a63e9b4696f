"""Inference backends, one module each: ``onnxrt`` (CPU) and ``tensorrt`` (NVIDIA GPU/Jetson)."""
