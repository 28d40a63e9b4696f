"""What an INT8 model computes on an x86 CPU without VNNI, emulated on any machine.

ONNX Runtime (MLAS) runs a uint8 x int8 GEMM on AVX2 or AVX-512 without VNNI with
``vpmaddubsw``: it multiplies neighbouring pairs along K and sums each pair in **saturating
16-bit**, so ``a[2j] * w[2j] + a[2j+1] * w[2j+1]`` is clamped to [-32768, 32767]. The raw
activation carries its zero point (about 128 for a LayerNorm output), so two weights near 127 of
one sign clamp even for an activation of zero. VNNI (``vpdpbusd``) and AMX sum in 32 bits and are
exact; ONNX Runtime's ``session.x64quantprecision`` makes the others exact too
(:class:`~swin_edge.backends.onnxrt.OrtConfig` sets it where needed, see
:attr:`~swin_edge.cpu.CpuInfo.u8s8_saturates`).

:func:`saturating_model` rewrites every u8 x s8 weight GEMM of a Q/DQ model into float ops
that do the clamped pair sums, so a VNNI build machine can tell what the fast kernels of an
AVX2 box would do to the model (``scripts/u8s8_saturation.py``). An analysis tool: it
materializes a (rows, K/2, N) tensor per GEMM, so feed one image at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import SwinEdgeError
from ..onnx_graph import node_attrs
from .onnxrt_lowering import _const, _float_bias, u8s8_operands

INT16_MIN, INT16_MAX = -32768.0, 32767.0


def _weight_gemm(
    node: onnx.NodeProto, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> tuple[str, float, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(u8 activation, its zero point, int8 weight (K, N), per-output scale of the int32
    accumulator, float bias or None) of a Gemm/MatMul the u8s8 kernels run, else None."""
    operands = u8s8_operands(node, prod, inits)
    if operands is None or operands[0][0] in inits:
        return None
    a, w = operands
    attrs = node_attrs(node)
    if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0):
        return None
    a_scale, a_zp = _const(inits, a[1]), _const(inits, a[2])
    weight = _const(inits, w[0])
    if a_zp.size != 1 or a_scale.size != 1 or weight.ndim != 2:
        return None
    if w[2] and np.any(_const(inits, w[2]) != 0):
        return None  # asymmetric weights: not what the recipes write
    trans_b = node.op_type == "Gemm" and bool(attrs.get("transB", 0))
    weight_kn = weight.T if trans_b else weight
    n_out = weight_kn.shape[1]
    w_scale = _const(inits, w[1]).astype(np.float32).reshape(-1)
    out_axis = 0 if trans_b else 1
    if w_scale.size != 1 and (w[3] % 2 != out_axis or w_scale.size != n_out):
        return None
    bias = None
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
        if attrs.get("beta", 1.0) != 1.0:
            return None
        bias = _float_bias(node.input[2], prod, inits, n_out)
        if bias is None:
            return None
    scale = float(a_scale.reshape(())) * np.broadcast_to(w_scale, (n_out,))
    return a[0], float(a_zp.reshape(())), weight_kn, scale, bias


def _clamped_gemm(
    out: str,
    act: str,
    zero_point: float,
    weight: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray | None,
    prefix: str,
    clamp: bool = True,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing ``out`` = (sum_j clamp16(pair_j) - zp * colsum(W)) * scale (+ bias)."""
    k = weight.shape[0]
    pairs = k // 2
    w = weight.astype(np.float32)
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), prefix + name))
        return prefix + name

    i64 = np.int64
    t = {
        name: const(name, value)
        for name, value in (
            ("zero", np.array([0], i64)),
            ("one", np.array([1], i64)),
            ("end", np.array([2 * pairs], i64)),
            ("axis", np.array([-1], i64)),
            ("step", np.array([2], i64)),
            ("pair_axis", np.array([-2], i64)),
            ("w_even", w[0 : 2 * pairs : 2]),
            ("w_odd", w[1 : 2 * pairs : 2]),
            ("lo", np.array(INT16_MIN, np.float32)),
            ("hi", np.array(INT16_MAX, np.float32)),
            ("zp_colsum", (zero_point * w.sum(axis=0)).astype(np.float32)),
            ("scale", scale.astype(np.float32)),
        )
    }
    p = prefix
    nodes = [
        helper.make_node("Cast", [act], [p + "a"], to=TensorProto.FLOAT),
        helper.make_node("Slice", [p + "a", t["zero"], t["end"], t["axis"], t["step"]], [p + "ae"]),
        helper.make_node("Slice", [p + "a", t["one"], t["end"], t["axis"], t["step"]], [p + "ao"]),
        helper.make_node("Unsqueeze", [p + "ae", t["axis"]], [p + "ae3"]),
        helper.make_node("Unsqueeze", [p + "ao", t["axis"]], [p + "ao3"]),
        helper.make_node("Mul", [p + "ae3", t["w_even"]], [p + "pe"]),
        helper.make_node("Mul", [p + "ao3", t["w_odd"]], [p + "po"]),
        helper.make_node("Add", [p + "pe", p + "po"], [p + "pair"]),
        helper.make_node("Clip", [p + "pair", t["lo"], t["hi"]], [p + "clamped"])
        if clamp
        else helper.make_node("Identity", [p + "pair"], [p + "clamped"]),
        helper.make_node("ReduceSum", [p + "clamped", t["pair_axis"]], [p + "acc"], keepdims=0),
    ]
    acc = p + "acc"
    if k % 2:  # the last element has no partner: one product, never clamped
        last = const("w_last", w[k - 1 :])
        k_end = const("k", np.array([k], i64))
        nodes += [
            helper.make_node("Slice", [p + "a", t["end"], k_end, t["axis"]], [p + "a_last"]),
            helper.make_node("MatMul", [p + "a_last", last], [p + "last"]),
            helper.make_node("Add", [acc, p + "last"], [p + "acc_all"]),
        ]
        acc = p + "acc_all"
    nodes += [
        helper.make_node("Sub", [acc, t["zp_colsum"]], [p + "centered"]),
        helper.make_node(
            "Mul", [p + "centered", t["scale"]], [p + "y" if bias is not None else out]
        ),
    ]
    if bias is not None:
        nodes.append(helper.make_node("Add", [p + "y", const("bias", bias)], [out]))
    return nodes, inits


def saturating_model(model: onnx.ModelProto, clamp: bool = True) -> tuple[onnx.ModelProto, int]:
    """A copy of Q/DQ ``model`` whose u8 x s8 weight GEMMs clamp each pair of products to
    int16 as ONNX Runtime's u8s8 kernels do on x86 without VNNI; and how many were rewritten.
    Other nodes (u8 x u8 attention matmuls, which those CPUs run exactly) are kept.
    ``clamp=False``: the same graph without the clamp (equal outputs: nothing clamped)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise SwinEdgeError(f"u8s8 emulation needs ONNX opset >= 13 (the model has {opset})")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    count = 0
    for node in graph.node:
        parts = _weight_gemm(node, prod, inits)
        if parts is None:
            nodes.append(node)
            continue
        sub, sub_inits = _clamped_gemm(node.output[0], *parts, prefix=f"u8s8_{count}/", clamp=clamp)
        nodes += sub
        new_inits += sub_inits
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    return out, count


def saturating_file(src: str | Path, dst: str | Path) -> int:
    """:func:`saturating_model` of ``src`` written to ``dst``; returns the GEMMs rewritten."""
    model, count = saturating_model(onnx.load(str(src)))
    onnx.save(model, str(dst))
    return count


def private_weight_dqs(model: onnx.ModelProto) -> int:
    """Give every DequantizeLinear of a constant int8 tensor (a weight) one consumer and its own
    initializers, in place; returns how many DQ copies were added. ONNX Runtime's exact mode
    (``session.x64quantprecision``) converts each quantized node's int8 weight and zero point to
    uint8 under a derived name, and fails to load ("Attempt to replace the existing tensor")
    when two nodes share them: e.g. a layer applied twice (CBAM's channel MLP) in the
    tensorrt recipe. The copies compute the same values."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))
    seen: set[str] = set()
    nodes: list[onnx.NodeProto] = []
    added = 0
    for n in graph.node:
        nodes.append(n)
        w = inits.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if w is None or w.data_type != TensorProto.INT8:
            continue
        users = consumers.get(n.output[0], [])
        shared = any(i in seen for i in n.input if i in inits)  # with an earlier weight DQ
        seen.update(i for i in n.input if i in inits)
        for user, slot in users if shared else users[1:]:
            added += 1
            dq = onnx.NodeProto()
            dq.CopyFrom(n)
            dq.name = f"{n.name or n.output[0]}/private{added}"
            dq.output[0] = f"{n.output[0]}/private{added}"
            for j, name in enumerate(n.input):
                if name in inits:
                    t = onnx.TensorProto()
                    t.CopyFrom(inits[name])
                    t.name = f"{name}/private{added}"
                    graph.initializer.append(t)
                    dq.input[j] = t.name
            nodes.append(dq)
            user.input[slot] = dq.output[0]
    if added:
        del graph.node[:]
        graph.node.extend(nodes)
    return added
