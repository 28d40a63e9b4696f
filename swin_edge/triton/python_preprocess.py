"""Triton Python-backend model: encoded JPEG/PNG bytes -> the classifier's input tensor.

:mod:`swin_edge.triton.repository` copies this file as ``<model>/<version>/model.py`` and
:mod:`swin_edge.triton.preprocess` beside it as ``swin_edge_preprocess.py`` (the stub puts the
version folder on ``sys.path``), with ``swin_edge_stub_compat.py``, so it needs only numpy and
Pillow in Triton's Python. The ``preprocess`` parameter holds the model's preprocessing (JSON:
img_size, crop_pct, interpolation, mean, std), the same that calibration used.

Input: UINT8 ``[-1]`` (ragged: requests of different sizes batch together), one encoded image
per row (without a batch dim: the request is one image). Triton's BYTES type is avoided: the
stub of nvidia-pytriton 0.7 (numpy 1 ABI) cannot read BYTES tensors under numpy 2. An image
that does not decode fails its request only.
"""

from __future__ import annotations

import json
from typing import Any

try:  # in the package (tests); in Triton the helpers are copied beside this file
    from .preprocess import preprocess_bytes
    from .stub_compat import as_numpy, to_tensor
except ImportError:
    from swin_edge_preprocess import preprocess_bytes
    from swin_edge_stub_compat import as_numpy, to_tensor

import numpy as np


class TritonPythonModel:
    """Decode and preprocess every image of every request."""

    def initialize(self, args: dict[str, str]) -> None:
        cfg = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        self.pp = json.loads(params["preprocess"])
        self.input_name = cfg["input"][0]["name"]
        self.output_name = cfg["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for r in requests:
            rows = as_numpy(pb_utils.get_input_tensor_by_name(r, self.input_name))
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows  # no batch dim: one image
            try:
                out = np.stack([preprocess_bytes(row.tobytes(), self.pp) for row in rows])
            except ValueError as e:
                err = pb_utils.TritonError(f"input '{self.input_name}': {e}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=err))
                continue
            tensor = to_tensor(pb_utils, self.output_name, out)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
