"""Per-layer SQNR between an FP32 model and its Q/DQ version, to find the layers that hurt."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from .errors import SwinEdgeError
from .metrics import sqnr_db
from .quantize.placement import GEMM_OPS

_ELEM_FLOAT = onnx.TensorProto.FLOAT


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    # an INT8 + FP16 model (tensorrt recipe) has float16 GEMM outputs: declare their own type
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    except Exception:  # no inferred types: every requested output is declared float32
        inferred = []
    types = {v.name: v.type.tensor_type.elem_type for v in inferred}
    del m.graph.value_info[:]
    existing = {o.name for o in m.graph.output}
    for n in names:
        if n not in existing:
            elem = types.get(n) or _ELEM_FLOAT
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, elem, None))
    return m.SerializeToString()


def _ort_outputs(model: onnx.ModelProto, names: list[str], threads: int) -> Callable:
    """``run(x) -> {name: array}`` of ``model`` with ``names`` as extra outputs (ONNX Runtime,
    graph kept as written: fusions would hide the intermediate tensors asked for)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(_with_outputs(model, names), so, providers=["CPUExecutionProvider"])
    inp, outs = sess.get_inputs()[0].name, [o.name for o in sess.get_outputs()]
    return lambda x: dict(zip(outs, sess.run(None, {inp: x}), strict=True))


def per_layer_sqnr(
    fp32_path: str | Path,
    int8_path: str | Path,
    images: np.ndarray,
    threads: int = 0,
    runtime: str = "ort",
) -> list[tuple[str, float]]:
    """SQNR (dB) of every GEMM/MatMul/Conv output, worst first, on ``images``: the FP32 model
    in ONNX Runtime against the Q/DQ model in ``runtime`` (``ort`` or ``openvino``)."""
    ref = onnx.load(str(fp32_path))
    test = onnx.load(str(int8_path))
    test_out = {n.name: n.output[0] for n in test.graph.node if n.op_type in GEMM_OPS}
    pairs = [
        (n.name, n.output[0], test_out[n.name])
        for n in ref.graph.node
        if n.op_type in GEMM_OPS and n.name in test_out
    ]
    if runtime not in ("ort", "openvino"):
        raise SwinEdgeError(f"per-layer SQNR runs on ort or openvino, not {runtime!r}")
    run_ref = _ort_outputs(ref, [p[1] for p in pairs], threads)
    with contextlib.ExitStack() as stack:
        if runtime == "openvino":  # as the runner compiles it: its int8 kernels and fusions
            from .backends.openvino import OpenvinoRunner, OvConfig

            ov_runner = OpenvinoRunner(int8_path, OvConfig(threads=threads), [p[2] for p in pairs])
            run_test = stack.enter_context(ov_runner).infer_named
        else:
            run_test = _ort_outputs(test, [p[2] for p in pairs], threads)
        acc = _collect(ref, pairs, images, run_ref, run_test)
    results = []
    for node, vals in acc.items():
        r = np.concatenate([v[0].ravel() for v in vals]).astype(np.float64)
        t = np.concatenate([v[1].ravel() for v in vals]).astype(np.float64)
        results.append((node, sqnr_db(r, t)))
    return sorted(results, key=lambda kv: kv[1])


def _collect(
    ref: onnx.ModelProto,
    pairs: list[tuple[str, str, str]],
    images: np.ndarray,
    run_ref: Callable,
    run_test: Callable,
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Both models' outputs of every pair, batch by batch of the FP32 model's static batch."""
    inits = {i.name for i in ref.graph.initializer}
    d0 = next(i for i in ref.graph.input if i.name not in inits).type.tensor_type.shape.dim[0]
    step = d0.dim_value if d0.HasField("dim_value") and d0.dim_value > 0 else 1
    if len(images) < step:  # a static batch larger than the sample: repeat images to fill it
        images = np.resize(images, (step, *images.shape[1:]))
    acc: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {p[0]: [] for p in pairs}
    for i in range(0, len(images) - step + 1, step):
        x = np.ascontiguousarray(images[i : i + step], dtype=np.float32)
        r_out, t_out = run_ref(x), run_test(x)
        for node, r, t in pairs:
            acc[node].append((r_out[r], t_out[t]))
    return acc
