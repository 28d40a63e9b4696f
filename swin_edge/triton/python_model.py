"""Triton Python-backend model: an ONNX model run by swin_edge's ONNX Runtime runner.

:mod:`swin_edge.triton.repository` copies this file as ``<model>/<version>/model.py`` beside
the ONNX. ``config.pbtxt`` parameters: ``onnx_file`` (in the version folder), ``threads``
(intra-op threads, 0: all cores) and ``lower_int8`` ("1": uint8 Q/DQ Gemms as
MatMulIntegerToFloat, like ``compare``/``bench``). With dynamic batching Triton hands
``execute`` several requests at once; they run as one batch and the outputs are split back.

Needs swin_edge, onnx and onnxruntime in Triton's Python (the stub's interpreter: see
:mod:`swin_edge.triton.stub_compat`, copied beside this file, for how the local server makes
this environment's packages importable, and why tensors cross through DLPack).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

try:  # in the package (tests); in Triton the helper is copied beside this file
    from .stub_compat import as_numpy, to_tensor
except ImportError:
    from swin_edge_stub_compat import as_numpy, to_tensor

import numpy as np


def parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """The ``parameters`` map of a config (as the backend passes it: JSON) as plain strings."""
    return {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}


class TritonPythonModel:
    """Batch the requests Triton hands over, run them through the ONNX Runtime runner."""

    def initialize(self, args: dict[str, str]) -> None:
        from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig

        cfg = json.loads(args["model_config"])
        params = parameters(cfg)
        folder = Path(args["model_repository"]) / args["model_version"]
        ort_cfg = OrtConfig(
            threads=int(params.get("threads", "0")),
            lower_int8=params.get("lower_int8", "1") == "1",
        )
        self.runner = OnnxrtRunner(folder / params.get("onnx_file", "model.onnx"), ort_cfg)
        self.runner.activate()
        self.input_name = cfg["input"][0]["name"]
        self.output_names = [o["name"] for o in cfg["output"]]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output for ``batch``; a static-batch ONNX gets padded chunks of its batch."""
        session, feed = self.runner.session, self.runner.input_name
        step = self.runner.static_batch
        if step is None or len(batch) == step:
            return session.run(self.output_names, {feed: batch})
        parts: list[list[np.ndarray]] = []
        for i in range(0, len(batch), step):
            chunk = batch[i : i + step]
            n = len(chunk)
            if n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            parts.append([o[:n] for o in session.run(self.output_names, {feed: chunk})])
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        arrays = [as_numpy(pb_utils.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        try:
            outs = self.run(np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32))
        except Exception as e:  # a failed run fails these requests, not the server
            err = pb_utils.TritonError(f"inference failed: {type(e).__name__}: {e}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        responses, start = [], 0
        for a in arrays:
            stop = start + len(a)
            tensors = [
                to_tensor(pb_utils, n, o[start:stop])
                for n, o in zip(self.output_names, outs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses

    def finalize(self) -> None:
        self.runner = None
