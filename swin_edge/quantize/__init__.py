"""INT8 post-training quantization to explicit Q/DQ ONNX (ONNX Runtime or NNCF engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SwinEdgeError
from ..onnx_check import check_image_model_file
from .common import QuantResult, check_symmetric_int8
from .placement import Placement, plan_placement
from .recipe import QuantRecipe


def quantize_onnx(
    fp32_path: str | Path, out_path: str | Path, images: np.ndarray, recipe: QuantRecipe
) -> QuantResult:
    """FP32 ONNX + calibration images (N, 3, H, W) -> Q/DQ INT8 ONNX written atomically.

    Refused up front: an input that is not a float image model or is already quantized, an
    output that is the input file, and images whose shape does not match the model's input.
    """
    info = check_image_model_file(fp32_path, allow_quantized=False)
    out = Path(out_path)
    if out.exists() and out.samefile(fp32_path):  # same file, or a link to it
        raise SwinEdgeError(
            f"output '{out_path}' is the input model '{fp32_path}'; pass a different --out"
        )
    if out.is_dir():
        raise SwinEdgeError(f"output '{out_path}' is a folder; pass a file like model.int8.onnx")
    if len(images) == 0:
        raise SwinEdgeError("no calibration images; pass --calib-dir with JPEG/PNG files")
    if images.ndim != 4 or tuple(images.shape[1:]) != info.input_shape[1:]:
        raise SwinEdgeError(
            f"calibration images have shape {tuple(images.shape[1:])} per image but "
            f"'{fp32_path}' takes {info.input_shape[1:]}; preprocess with the model's config"
        )
    if recipe.engine == "nncf":
        from .nncf_engine import onnx_to_int8_nncf as engine
    else:
        from .onnxrt_engine import onnx_to_int8_ort as engine
    if not recipe.fp16_scales and recipe.gemm_input_bits == 8:
        return engine(fp32_path, out_path, images, recipe)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="swin_edge-q-") as work:  # then a second pass
        res = engine(fp32_path, Path(work) / "int8.onnx", images, recipe)
        if recipe.fp16_scales:  # an INT8 + FP16 model
            from .fp16 import onnx_to_fp16_file

            res.path = onnx_to_fp16_file(res.path, out_path)
        else:
            from .u8s8_safe import narrow_file

            res.path = narrow_file(res.path, out_path)  # the same nodes, other grids
    return res


__all__ = [
    "Placement",
    "QuantRecipe",
    "QuantResult",
    "check_symmetric_int8",
    "plan_placement",
    "quantize_onnx",
]
