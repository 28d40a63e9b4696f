"""NNCF post-training quantization engine (ONNX backend, ``ModelType.TRANSFORMER``).

NNCF's ONNX output runs *slower than FP32* in ONNX Runtime on its own: it keeps Gemm biases
in float, which blocks ORT's QGemm fusion (ORT then dequantizes every weight on every run and
runs a float Gemm); it leaves ``DQ -> Transpose(k) -> MatMul`` (q@k^T runs as a float
MatMul); it emits int8 activations (ORT's fast x86 kernels are u8s8); SmoothQuant adds a float
Mul before every GEMM; and it never quantizes ``softmax @ v``. For ``target='cpu'`` we switch
SmoothQuant off and apply the rewrites in :mod:`.qdq_passes` (int32 bias, DQ sinking, uint8).
For ``target='tensorrt'`` the uint8 grids NNCF puts after a ReLU become symmetric int8.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from ..errors import SwinEdgeError
from ..utils import atomic_path, lazy_import
from .common import QuantResult, check_symmetric_int8, input_info, iter_batches, qdq_summary
from .placement import plan_placement
from .qdq_passes import (
    activations_to_symmetric_int8,
    activations_to_uint8,
    quantize_gemm_bias,
    sink_dequantize,
)
from .recipe import QuantRecipe


def onnx_to_int8_nncf(
    fp32_path: str | Path, out_path: str | Path, images: np.ndarray, recipe: QuantRecipe
) -> QuantResult:
    nncf = lazy_import("nncf", "pip install nncf")
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(fp32_path))
    name, batch = input_info(model)
    plan = plan_placement(model, recipe.target, recipe.keep_float)
    data = [{name: b} for b in iter_batches(images, batch)]
    adv = AdvancedQuantizationParameters()
    if recipe.target == "cpu":
        adv.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=-1)
    if recipe.calibration == "percentile":
        adv.activations_range_estimator_params = RangeEstimatorParametersSet.QUANTILE
    preset = (
        nncf.QuantizationPreset.PERFORMANCE
        if recipe.target == "tensorrt"
        else nncf.QuantizationPreset.MIXED
    )
    qmodel = nncf.quantize(
        model,
        nncf.Dataset(data),
        preset=preset,
        model_type=nncf.ModelType.TRANSFORMER,
        target_device=nncf.TargetDevice.CPU if recipe.target == "cpu" else nncf.TargetDevice.ANY,
        subset_size=len(data),
        ignored_scope=nncf.IgnoredScope(names=plan.keep_float, validate=False),
        advanced_parameters=adv,
    )
    if recipe.target == "cpu":
        sink_dequantize(qmodel)
        activations_to_uint8(qmodel)
        quantize_gemm_bias(qmodel)
    else:  # NNCF picks uint8 for non-negative activations (after a ReLU); TensorRT: int8 only
        activations_to_symmetric_int8(qmodel)
        try:
            check_symmetric_int8(qmodel)
        except SwinEdgeError as e:
            raise SwinEdgeError(
                f"{e} after NNCF, which TensorRT cannot take; use --engine ort with --target "
                "tensorrt for this model"
            ) from None
    with atomic_path(out_path) as tmp:
        onnx.save(qmodel, str(tmp))
    quantized = sorted({n.name for n in qmodel.graph.node} & set(plan.gemms))
    return QuantResult(
        Path(out_path),
        recipe,
        len(images),
        quantized,
        plan.keep_float,
        qdq_summary(qmodel),
        plan.reasons,
    )


def onnx_to_int8_openvino(fp32_path: str | Path, out_path: str | Path, images: np.ndarray) -> Path:
    """OpenVINO's own INT8 recipe: NNCF's defaults for a transformer on the CPU (MIXED preset,
    its placement, SmoothQuant), written as Q/DQ ONNX atomically. OpenVINO fuses this
    placement into its int8 kernels; ONNX Runtime runs it slower than FP32 (see README), so it
    is only ever an OpenVINO candidate."""
    nncf = lazy_import("nncf", "pip install nncf")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    model = onnx.load(str(fp32_path))
    name, batch = input_info(model)
    data = [{name: b} for b in iter_batches(images, batch)]
    qmodel = nncf.quantize(
        model,
        nncf.Dataset(data),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(data),
    )
    with atomic_path(out_path) as tmp:
        onnx.save(qmodel, str(tmp))
    return Path(out_path)
