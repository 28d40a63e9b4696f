"""Serving with NVIDIA Triton Inference Server.

* :mod:`.repository`: a model repository for a built model (one model per precision/backend,
  optional JPEG ensemble), every ``config.pbtxt`` validated (:mod:`.model_config`) before it
  is written;
* :mod:`.server`: a local ``tritonserver`` (the nvidia-pytriton wheel's) on loopback ports;
* :mod:`.serve_bench`: a bounded load generator (concurrency sweep, latency percentiles,
  throughput, failures) with JSON/Markdown/PNG reports;
* :mod:`.python_model` / :mod:`.python_preprocess`: the Python-backend model templates.

Nothing here imports tritonclient, torch or ONNX Runtime at import time.
"""
