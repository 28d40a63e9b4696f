"""Per-layer SQNR between an FP32 model and its Q/DQ version, to find the layers that hurt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

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


def per_layer_sqnr(
    fp32_path: str | Path, int8_path: str | Path, images: np.ndarray, threads: int = 0
) -> list[tuple[str, float]]:
    """SQNR (dB) of every GEMM/MatMul/Conv output, worst first, on ``images``."""
    import onnxruntime as ort

    ref = onnx.load(str(fp32_path))
    test = onnx.load(str(int8_path))
    test_out = {n.name: n.output[0] for n in test.graph.node if n.op_type in GEMM_OPS}
    pairs = [
        (n.name, n.output[0], test_out[n.name])
        for n in ref.graph.node
        if n.op_type in GEMM_OPS and n.name in test_out
    ]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    # Fusions would hide the intermediate tensors we ask for: keep the graph as written.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    results = []
    sessions = [
        ort.InferenceSession(
            _with_outputs(m, [p[i] for p in pairs]), so, providers=["CPUExecutionProvider"]
        )
        for m, i in ((ref, 1), (test, 2))
    ]
    name = sessions[0].get_inputs()[0].name
    batch = sessions[0].get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) else 1
    if len(images) < step:  # a static batch larger than the sample: repeat images to fill it
        images = np.resize(images, (step, *images.shape[1:]))
    acc: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {p[0]: [] for p in pairs}
    for i in range(0, len(images) - step + 1, step):
        x = np.ascontiguousarray(images[i : i + step], dtype=np.float32)
        outs = [
            dict(zip([o.name for o in s.get_outputs()], s.run(None, {name: x}), strict=True))
            for s in sessions
        ]
        for node, r, t in pairs:
            acc[node].append((outs[0][r], outs[1][t]))
    for node, vals in acc.items():
        r = np.concatenate([v[0].ravel() for v in vals]).astype(np.float64)
        t = np.concatenate([v[1].ravel() for v in vals]).astype(np.float64)
        results.append((node, sqnr_db(r, t)))
    return sorted(results, key=lambda kv: kv[1])
