"""How fast a model could run on this CPU if it were only its GEMMs at the CPU's peak.

``gemm_ops`` counts the multiply-adds of every Gemm/MatMul in an ONNX model (shape inference,
static shapes); ``gemm_peak`` measures this CPU's u8s8 (ONNX Runtime ``MatMulInteger``, the
kernel family the INT8 path uses) and FP32 (``MatMul``) throughput on a large square GEMM. On
x86 without VNNI/AMX the default u8s8 kernels clamp pairs of products, so 8-bit models run the
exact u8u8 kernels there (:class:`~swin_edge.backends.onnxrt.OrtConfig`) and only models with
7-bit GEMM inputs run the fast ones: ``exact_u8s8=True`` measures the former too. Their quotient is
a latency floor: a model whose time is far above it spends it outside the GEMMs
(normalization, softmax, data movement), where INT8 cannot help. Benchmarks print it next to
the deployed model's time; it is a measurement of this machine, never a constant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_graph import node_attrs

GEMM_OPS = ("Gemm", "MatMul")


def _dims(vi: onnx.ValueInfoProto) -> list[int] | None:
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
    return dims if dims and all(d > 0 for d in dims) else None


def gemm_ops(path: str | Path) -> int:
    """Multiply-adds of every Gemm/MatMul (x 2 for ops) of a statically shaped model."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes: dict[str, list[int] | None] = {
        vi.name: _dims(vi) for vi in [*g.input, *g.value_info, *g.output]
    }
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    macs = 0
    for n in g.node:
        if n.op_type not in GEMM_OPS:
            continue
        a, b = shapes.get(n.input[0]), shapes.get(n.input[1])
        if not a or not b:
            raise ValueError(f"'{path}': {n.name} has no static input shapes")
        if n.op_type == "Gemm":
            attrs = node_attrs(n)
            m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
            cols = b[0] if attrs.get("transB") else b[1]
            macs += m * k * cols
        else:
            batch = int(np.prod(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])) or (1,)))
            macs += batch * a[-2] * a[-1] * b[-1]
    return 2 * macs


@dataclass(frozen=True)
class GemmPeak:
    """Measured throughput (ops/s) of a ``size``-cube GEMM at ``threads``; int8 with ONNX
    Runtime's default kernels and, where measured, its exact u8u8 ones."""

    threads: int
    size: int
    int8_ops_per_s: float
    fp32_ops_per_s: float
    int8_exact_ops_per_s: float | None = None

    def floor_ms(self, ops: int, int8: bool, exact: bool = False) -> float:
        if exact and self.int8_exact_ops_per_s is None:
            raise ValueError("the exact u8u8 kernels were not measured (gemm_peak exact_u8s8)")
        rate = self.int8_exact_ops_per_s if exact else self.int8_ops_per_s
        return 1e3 * ops / (rate if int8 else self.fp32_ops_per_s)


def _gemm_model(size: int, integer: bool) -> bytes:
    rng = np.random.default_rng(0)
    if integer:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
        # full-scale weights: ONNX Runtime leaves weights within +-64 to the u8s8 kernels
        w = numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "w")
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
        w = numpy_helper.from_array(rng.standard_normal((size, size), dtype=np.float32), "w")
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph([node], "gemm", [a], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model.SerializeToString()


def _ops_per_s(
    model: bytes, feed: np.ndarray, threads: int, repeats: int, exact: bool = False
) -> float:
    import onnxruntime as ort

    from .backends.onnxrt import EXACT_U8S8_ENTRY

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if exact:
        so.add_session_config_entry(EXACT_U8S8_ENTRY, "1")
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    for _ in range(2):
        sess.run(None, {"a": feed})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"a": feed})
        times.append(time.perf_counter() - t0)
    return 2 * feed.shape[0] ** 3 / float(np.median(times))


def gemm_peak(
    threads: int = 0, size: int = 1024, repeats: int = 7, exact_u8s8: bool = False
) -> GemmPeak:
    """Measure int8 and FP32 GEMM throughput in ONNX Runtime on this CPU (median of runs), the
    int8 one with its default kernels (the fastest a deployed model can use) and, with
    ``exact_u8s8``, also with the exact ones 8-bit models run where the default ones clamp."""
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (size, size), dtype=np.uint8)
    f32 = rng.standard_normal((size, size), dtype=np.float32)
    int8 = _gemm_model(size, True)
    return GemmPeak(
        threads,
        size,
        _ops_per_s(int8, u8, threads, repeats),
        _ops_per_s(_gemm_model(size, False), f32, threads, repeats),
        _ops_per_s(int8, u8, threads, repeats, exact=True) if exact_u8s8 else None,
    )
