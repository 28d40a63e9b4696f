"""ONNX Runtime ``quantize_static`` engine (explicit Q/DQ), driven by our placement plan."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from ..errors import SwinEdgeError
from ..utils import atomic_path, lazy_import
from .common import QuantResult, check_symmetric_int8, input_info, iter_batches, qdq_summary
from .placement import GEMM_OPS, MOVE_OPS, plan_placement
from .qdq_passes import bypass_float_consumers
from .recipe import QuantRecipe


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs progress on the root logger and prints; silence both, then restore."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _histogram_bins(num_bins: int = 2048, num_quantized_bins: int = 128) -> Iterator[None]:
    """ORT's entropy calibrator defaults to 128 bins and 128 quantized bins: one candidate
    threshold, i.e. plain min/max, and ``quantize_static`` forwards no bin options. Use
    TensorRT's entropy setting (2048 histogram bins searched down to 128) instead."""
    qmod = importlib.import_module("onnxruntime.quantization.quantize")
    original = qmod.create_calibrator

    def create_calibrator(*args, **kwargs):
        opts = dict(kwargs.get("extra_options") or {})
        opts.setdefault("num_bins", num_bins)
        if str(kwargs.get("calibrate_method")).endswith("Entropy"):
            opts.setdefault("num_quantized_bins", num_quantized_bins)
        kwargs["extra_options"] = opts
        return original(*args, **kwargs)

    qmod.create_calibrator = create_calibrator
    try:
        yield
    finally:
        qmod.create_calibrator = original


def onnx_to_int8_ort(
    fp32_path: str | Path, out_path: str | Path, images: np.ndarray, recipe: QuantRecipe
) -> QuantResult:
    """Calibrate on ``images`` (N, 3, H, W) and write an explicit Q/DQ model to ``out_path``."""
    q = lazy_import("onnxruntime.quantization", "pip install onnxruntime")
    model = onnx.load(str(fp32_path))
    name, batch = input_info(model)
    plan = plan_placement(model, recipe.target, recipe.keep_float)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = ({name: b} for b in iter_batches(images, batch))

        def get_next(self):
            return next(self._it, None)

    method = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }[recipe.calibration]
    extra = {
        "CalibPercentile": recipe.percentile,
        "CalibTensorRangeSymmetric": recipe.symmetric_activations,
        "ActivationSymmetric": recipe.symmetric_activations,
        "WeightSymmetric": True,
        "MatMulConstBOnly": False,
    }
    if recipe.target == "tensorrt":
        act, op_types = q.QuantType.QInt8, sorted(GEMM_OPS | {"Add"})
        extra.update(QuantizeBias=False, OpTypesToExcludeOutputQuantization=op_types)
    else:
        act, op_types = q.QuantType.QUInt8, sorted(GEMM_OPS | MOVE_OPS)
        extra.update(
            ForceQuantizeNoInputCheck=True, OpTypesToExcludeOutputQuantization=sorted(GEMM_OPS)
        )
    # Hand ORT the ModelProto, not the path: given a path, ORT writes `<input>-inferred.onnx`
    # beside the input (a fixed name: parallel runs collide, a read-only folder fails); given a
    # proto, its scratch (inferred and augmented models) goes to its own TemporaryDirectory.
    # ORT may move the proto's weights to external data there, so `model` is not used after.
    try:
        with atomic_path(out_path) as tmp, _histogram_bins(recipe.histogram_bins), _quiet():
            q.quantize_static(
                model,
                str(tmp),
                Reader(),
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                nodes_to_quantize=plan.quantize,
                nodes_to_exclude=plan.keep_float,
                per_channel=recipe.per_channel,
                activation_type=act,
                weight_type=q.QuantType.QInt8,
                calibrate_method=method,
                calibration_providers=["CPUExecutionProvider"],
                extra_options=extra,
                use_external_data_format=False,
            )
            qmodel = onnx.load(str(tmp))
            if bypass_float_consumers(qmodel, set(plan.quantize)):
                onnx.save(qmodel, str(tmp))
            if recipe.target == "tensorrt":
                check_symmetric_int8(qmodel)
            counts = qdq_summary(qmodel)
    except OSError as e:  # full disk, unwritable output folder or TMPDIR
        raise SwinEdgeError(
            f"quantizing '{fp32_path}' could not write {e.filename or out_path} ({e.strerror}); "
            "free disk space or make the --out folder and TMPDIR writable"
        ) from None
    return QuantResult(
        Path(out_path), recipe, len(images), plan.quantize, plan.keep_float, counts, plan.reasons
    )
