"""Lower Q/DQ GEMMs to ONNX Runtime's MatMulIntegerToFloat, which adds the bias in parallel.

ONNX Runtime fuses ``DQ(uint8 x), DQ(int8 W), DQ(int32 b) -> Gemm`` into QGemm. Its CPU kernel
broadcasts the bias into the whole (M, N) int32 accumulator on one thread before the threaded
GEMM starts, so on Swin's 3136-token stage that serial pass costs as much as the GEMM itself and
a second thread barely helps (3136x96x384: 590 us on 1 thread, 555 us on 2). The contrib op
``com.microsoft.MatMulIntegerToFloat`` runs the same u8s8 kernel but adds a float bias in each
thread's output stage (303 us on 2 threads). The rewrite is exact up to float rounding:
``(acc + b_q) * s`` becomes ``acc * s + b_q * s``.

The Q/DQ file stays the portable artifact; :class:`~swin_edge.backends.onnxrt.OnnxrtRunner`
applies this lowering in memory, and :func:`lower_file` writes it out for plain ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..onnx_graph import node_attrs, remove_dead_nodes, remove_unused_initializers
from ..utils import atomic_path

MS_DOMAIN = "com.microsoft"


def _const(inits: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    return numpy_helper.to_array(inits[name]) if name in inits else None


def _dq_parts(
    node: onnx.NodeProto | None, inits: dict[str, onnx.TensorProto]
) -> tuple[str, str, str, int] | None:
    """(x, scale, zero_point or "", axis) of a DequantizeLinear with constant parameters."""
    if node is None or node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return None
    if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] not in inits):
        return None
    attrs = node_attrs(node)
    if attrs.get("block_size", 0):
        return None
    zp = node.input[2] if len(node.input) > 2 else ""
    return node.input[0], node.input[1], zp, int(attrs.get("axis", 1))


def u8s8_operands(
    node: onnx.NodeProto, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> tuple[tuple[str, str, str, int], tuple[str, str, str, int]] | None:
    """The activation and weight :func:`_dq_parts` of a Gemm/MatMul that multiplies uint8
    activations by a constant int8 weight (what ONNX Runtime's u8s8 kernels run), else None."""
    if node.op_type not in ("Gemm", "MatMul") or node.domain not in ("", "ai.onnx"):
        return None
    a = _dq_parts(prod.get(node.input[0]), inits)
    w = _dq_parts(prod.get(node.input[1]), inits)
    if a is None or w is None or w[0] not in inits or not a[2]:
        return None
    if _const(inits, a[2]).dtype != np.uint8 or _const(inits, w[0]).dtype != np.int8:
        return None
    return a, w


def _float_bias(
    name: str, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto], n_out: int
) -> np.ndarray | None:
    """The Gemm's C input as a float (N,) vector, or None if it is not a constant bias."""
    value = _const(inits, name)
    if value is None:
        dq = _dq_parts(prod.get(name), inits)
        if dq is None or dq[0] not in inits:
            return None
        q = _const(inits, dq[0]).astype(np.float64)
        zp = _const(inits, dq[2]).astype(np.float64) if dq[2] else 0.0
        value = (q - zp) * _const(inits, dq[1]).astype(np.float64)
    value = np.asarray(value, dtype=np.float32)
    if value.size == 1:
        value = np.full(n_out, value.reshape(()), np.float32)
    return value if value.shape == (n_out,) else None


def _lower_gemm(
    node: onnx.NodeProto,
    prod: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    new_inits: list[onnx.TensorProto],
) -> onnx.NodeProto | None:
    if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx"):
        return None
    attrs = node_attrs(node)
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
        return None
    a = _dq_parts(prod.get(node.input[0]), inits)
    w = _dq_parts(prod.get(node.input[1]), inits)
    if a is None or w is None or w[0] not in inits:
        return None
    a_scale, a_zp = _const(inits, a[1]), _const(inits, a[2]) if a[2] else None
    if a_scale.size != 1 or a_zp is None or a_zp.dtype != np.uint8 or a_zp.size != 1:
        return None  # MLAS is fast for u8 x s8 only; int8 activations (TensorRT recipe) stay
    weight = _const(inits, w[0])
    if weight.dtype != np.int8 or weight.ndim != 2:
        return None
    trans_b = bool(attrs.get("transB", 0))
    weight_kn = weight.T if trans_b else weight
    n_out = weight_kn.shape[1]
    out_axis = 0 if trans_b else 1  # the weight axis that indexes output channels
    w_scale = _const(inits, w[1])
    w_zp = _const(inits, w[2]) if w[2] else np.zeros((), np.int8)
    per_channel = w_scale.size > 1
    if per_channel and (w[3] % 2 != out_axis or w_scale.shape != (n_out,)):
        return None
    if w_zp.size not in (1, w_scale.size):
        return None
    bias = None
    if len(node.input) > 2 and node.input[2]:
        if attrs.get("beta", 1.0) != 1.0:
            return None
        bias = _float_bias(node.input[2], prod, inits, n_out)
        if bias is None:
            return None
    base = node.name or node.output[0]
    names = [f"{base}/lowered_{s}" for s in ("weight", "w_scale", "w_zp", "bias")]
    new_inits += [
        numpy_helper.from_array(np.ascontiguousarray(weight_kn), names[0]),
        numpy_helper.from_array(w_scale.astype(np.float32).reshape(-1), names[1]),
        numpy_helper.from_array(w_zp.astype(np.int8).reshape(-1), names[2]),
    ]
    if bias is not None:
        new_inits.append(numpy_helper.from_array(bias, names[3]))
    inputs = [a[0], names[0], a[1], names[1], a[2], names[2], names[3] if bias is not None else ""]
    return helper.make_node(
        "MatMulIntegerToFloat",
        inputs,
        list(node.output),
        name=f"{base}/MatMulIntegerToFloat",
        domain=MS_DOMAIN,
    )


def lower_int8_gemms(model: onnx.ModelProto) -> int:
    """Rewrite every uint8 x int8 Q/DQ Gemm of ``model`` in place; return how many."""
    graph = model.graph
    graph_attrs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in graph_attrs for n in graph.node for a in n.attribute):
        return 0  # control flow: names used inside subgraphs would defeat the dead-node pruning
    inits = {t.name: t for t in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    new_inits: list[onnx.TensorProto] = []
    nodes, count = [], 0
    for node in graph.node:
        lowered = _lower_gemm(node, prod, inits, new_inits)
        nodes.append(lowered or node)
        count += lowered is not None
    if not count:
        return 0
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    remove_dead_nodes(graph)  # the weight/bias DequantizeLinears the Gemms read
    remove_unused_initializers(graph)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return count


def has_int8_gemms(model: onnx.ModelProto) -> bool:
    """Cheap pre-check: does any Gemm read a DequantizeLinear output?"""
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return any(n.op_type == "Gemm" and n.input[0] in dq_outputs for n in model.graph.node)


def lower_file(src: str | Path, dst: str | Path) -> int:
    """Write the lowered model of ``src`` to ``dst`` (atomically); return the GEMMs lowered."""
    model = onnx.load(str(src))
    count = lower_int8_gemms(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return count
