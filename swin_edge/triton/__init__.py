"""Serving with NVIDIA Triton Inference Server.

* :mod:`.plan`: the models of a repository (one per precision/backend, optional JPEG
  ensemble), every ``config.pbtxt`` rendered and validated (:mod:`.model_config`);
* :mod:`.repository`: writes (staged, swapped in whole) and validates a model repository;
* :mod:`.deployment`: which models ``deploy --format triton`` and ``build --triton`` serve;
* :mod:`.server`: a local ``tritonserver`` (the nvidia-pytriton wheel's) on loopback ports;
* :mod:`.serve_bench`: a bounded load generator (concurrency sweep, latency percentiles,
  throughput, failures) with JSON/Markdown/PNG reports;
* :mod:`.python_model` / :mod:`.python_preprocess`: the Python-backend model templates.

Nothing here imports tritonclient, torch or ONNX Runtime at import time.
"""
