"""INT8 post-training quantization to explicit Q/DQ ONNX (ONNX Runtime or NNCF engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SwinEdgeError
from .common import QuantResult, check_symmetric_int8
from .placement import Placement, plan_placement
from .recipe import QuantRecipe


def quantize_onnx(
    fp32_path: str | Path, out_path: str | Path, images: np.ndarray, recipe: QuantRecipe
) -> QuantResult:
    """FP32 ONNX + calibration images (N, 3, H, W) -> Q/DQ INT8 ONNX written atomically."""
    if not Path(fp32_path).is_file():
        raise SwinEdgeError(f"'{fp32_path}' does not exist; run `python -m swin_edge export` first")
    if len(images) == 0:
        raise SwinEdgeError("no calibration images; pass --calib-dir with JPEG/PNG files")
    if recipe.engine == "nncf":
        from .nncf_engine import onnx_to_int8_nncf

        return onnx_to_int8_nncf(fp32_path, out_path, images, recipe)
    from .onnxrt_engine import onnx_to_int8_ort

    return onnx_to_int8_ort(fp32_path, out_path, images, recipe)


__all__ = [
    "Placement",
    "QuantRecipe",
    "QuantResult",
    "check_symmetric_int8",
    "plan_placement",
    "quantize_onnx",
]
