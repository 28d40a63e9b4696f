"""Exact Q/DQ graph rewrites that let ONNX Runtime fuse what NNCF emits.

* :func:`sink_dequantize` moves a per-tensor DequantizeLinear below pure data movement
  (Transpose/Reshape/Slice/Concat...), so DQ feeds the GEMM directly and ORT can fuse it
  (NNCF leaves ``DQ -> Transpose(k) -> MatMul`` and ``DQ -> roll slices -> Concat -> ... ->
  Gemm``, which ORT runs in float).
* :func:`activations_to_uint8` re-expresses int8 activation grids as uint8 with the zero point
  shifted by 128: the same real values, but ORT's fast x86 u8s8 kernels.
* :func:`activations_to_symmetric_int8` puts uint8 or asymmetric activation grids (NNCF's
  choice after a ReLU) on symmetric int8 over the same range, which TensorRT requires.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from ..onnx_graph import node_attrs, remove_dead_nodes, remove_unused_initializers

UNARY_MOVEMENT = frozenset(
    {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Flatten", "Gather"}
)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def _is_scalar(inits: dict[str, onnx.TensorProto], name: str) -> bool:
    t = inits.get(name)
    return t is not None and int(np.prod(t.dims)) == 1


def _insert_after(graph: onnx.GraphProto, new: dict[str, list[onnx.NodeProto]]) -> None:
    """Rebuild the node list once, placing ``new[name]`` right after the node ``name``
    (protobuf copies on extend, so references taken before a rebuild go stale)."""
    nodes = []
    for n in graph.node:
        nodes.append(n)
        nodes.extend(new.get(n.name, []))
    del graph.node[:]
    graph.node.extend(nodes)


def _same_qparams(inits: dict[str, onnx.TensorProto], a: onnx.NodeProto, b: onnx.NodeProto) -> bool:
    for x, y in zip(a.input[1:], b.input[1:], strict=False):
        if x != y and not np.array_equal(
            numpy_helper.to_array(inits[x]), numpy_helper.to_array(inits[y])
        ):
            return False
    return len(a.input) == len(b.input)


def _sink_once(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto]) -> bool:
    consumers = _consumers(graph)
    prod = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    for dq in graph.node:
        if (
            dq.op_type != "DequantizeLinear"
            or dq.input[0] in inits
            or dq.output[0] in outputs
            or not all(_is_scalar(inits, n) for n in dq.input[1:])
        ):
            continue  # only per-tensor activation DQ commutes with data movement
        users = consumers.get(dq.output[0], [])
        if users and all(u.op_type in UNARY_MOVEMENT and u.input[0] == dq.output[0] for u in users):
            new = {}
            for k, u in enumerate(users):
                q_out = f"{u.output[0]}_q"
                new[u.name] = [
                    onnx.helper.make_node(
                        "DequantizeLinear",
                        [q_out, *dq.input[1:]],
                        [u.output[0]],
                        name=f"{dq.name}_sunk{k}",
                    )
                ]
                u.input[0] = dq.input[0]
                u.output[0] = q_out
            graph.node.remove(dq)
            _insert_after(graph, new)
            return True
    for cat in graph.node:
        if cat.op_type != "Concat" or cat.output[0] in outputs:
            continue
        dqs = [prod.get(i) for i in cat.input]
        if not all(
            d is not None
            and d.op_type == "DequantizeLinear"
            and d.input[0] not in inits
            and len(consumers[d.output[0]]) == 1
            for d in dqs
        ):
            continue
        if not all(_is_scalar(inits, n) for n in dqs[0].input[1:]):
            continue
        if not all(_same_qparams(inits, dqs[0], d) for d in dqs[1:]):
            continue
        q_out = f"{cat.output[0]}_q"
        new_dq = onnx.helper.make_node(
            "DequantizeLinear",
            [q_out, *dqs[0].input[1:]],
            [cat.output[0]],
            name=f"{cat.name}_DequantizeLinear",
        )
        for i, d in enumerate(dqs):
            cat.input[i] = d.input[0]
        cat.output[0] = q_out
        for d in dqs:
            graph.node.remove(d)
        _insert_after(graph, {cat.name: [new_dq]})
        return True
    return False


def sink_dequantize(model: onnx.ModelProto) -> int:
    """Move per-tensor activation DQ below data movement: ``DQ -> {Slice, Transpose, ...}``
    becomes ``{Slice, ...} -> DQ`` (every consumer), and ``Concat(DQ(a), DQ(b))`` with equal
    scale/zero point becomes ``DQ(Concat(a, b))``. Exact; returns the number of rewrites."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    moved = 0
    while _sink_once(graph, inits):
        moved += 1
    if moved:
        del graph.value_info[:]  # inferred types/shapes of moved tensors are stale
    return moved


def activations_to_uint8(model: onnx.ModelProto) -> int:
    """Shift int8 activation Q/DQ pairs to uint8 (zero point + 128); returns pairs converted."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = _consumers(graph)
    weight_zps = {
        n.input[2]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(n.input) > 2
    }
    converted = 0
    done: set[str] = set()
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.input[0] in inits:
            continue
        zp_names = {q.input[2]}
        for dq in consumers.get(q.output[0], []):
            if dq.op_type == "DequantizeLinear" and len(dq.input) > 2:
                zp_names.add(dq.input[2])
        tensors = [inits.get(n) for n in zp_names]
        if any(t is None or t.data_type != onnx.TensorProto.INT8 for t in tensors):
            continue
        if zp_names & weight_zps:
            continue
        for name in zp_names - done:
            arr = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            inits[name].CopyFrom(numpy_helper.from_array(arr.astype(np.uint8), name))
            done.add(name)
        converted += 1
    if converted:
        del graph.value_info[:]  # inferred int8 types are stale
    return converted


def activations_to_symmetric_int8(model: onnx.ModelProto) -> int:
    """Re-grid each per-tensor activation Q/DQ pair that is uint8 or has a nonzero zero point as
    int8 with zero point 0, its scale covering the same calibrated range (TensorRT takes only
    symmetric int8). Not exact: a non-negative range (after a ReLU) keeps 128 of its 256
    levels. A Q whose codes reach anything but DequantizeLinear nodes with its own parameters
    (or are a graph output) is left alone. Returns the pairs converted."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    converted = 0
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or len(q.input) < 3 or q.input[0] in inits:
            continue
        if q.output[0] in outputs:
            continue
        scale, zp = inits.get(q.input[1]), inits.get(q.input[2])
        if scale is None or zp is None or not _is_scalar(inits, q.input[2]):
            continue
        zero = numpy_helper.to_array(zp)
        if zero.dtype == np.int8 and zero.item() == 0:
            continue
        readers = consumers.get(q.output[0], [])
        if not readers or any(
            n.op_type != "DequantizeLinear" or not _same_qparams(inits, q, n) for n in readers
        ):
            continue
        step = numpy_helper.to_array(scale)
        info = np.iinfo(zero.dtype)
        reach = max(abs(info.min - int(zero.item())), abs(info.max - int(zero.item())))
        base = q.output[0].replace("/", "_")
        graph.initializer.extend(
            [
                numpy_helper.from_array(
                    (step * (reach / 127)).astype(step.dtype), base + "_s8_scale"
                ),
                numpy_helper.from_array(np.zeros(zero.shape, np.int8), base + "_s8_zero_point"),
            ]
        )
        for n in (q, *readers):
            n.input[1], n.input[2] = base + "_s8_scale", base + "_s8_zero_point"
        converted += 1
    if converted:
        remove_unused_initializers(graph)
        del graph.value_info[:]  # inferred uint8 types are stale
    return converted


def bypass_float_consumers(model: onnx.ModelProto, quantized: set[str]) -> int:
    """Rewire nodes that are not in ``quantized`` but read ``DQ(Q(x))`` of an activation to read
    ``x`` itself (ORT's quantizer fake-quantizes a tensor for *all* its consumers: a LayerNorm
    beside a quantized residual add would get int8 input). Dead Q/DQ nodes are removed."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    rewired = 0
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in quantized:
            continue
        for idx, name in enumerate(node.input):
            dq = prod.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits:
                continue
            q = prod.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                node.input[idx] = q.input[0]
                rewired += 1
    if rewired:
        remove_dead_nodes(graph, ("QuantizeLinear", "DequantizeLinear"))
        del graph.value_info[:]
    return rewired


def quantize_gemm_bias(model: onnx.ModelProto) -> int:
    """Give ``Gemm(DQ(x), DQ(W), bias)`` an int32 bias at scale s_x * s_W (zero point 0), as
    ONNX Runtime's own quantizer does. ORT fuses DQ->Gemm into QGemm only with such a bias;
    NNCF leaves it float, so ORT dequantizes the weights on every run and runs a float Gemm.
    The rounding error is at most half a step of s_x * s_W per output."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    done = 0
    new: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        attrs = node_attrs(node)
        if (
            attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            continue
        dq_x, dq_w = prod.get(node.input[0]), prod.get(node.input[1])
        if not (dq_x and dq_w and dq_x.op_type == dq_w.op_type == "DequantizeLinear"):
            continue
        if dq_w.input[0] not in inits or not _is_scalar(inits, dq_x.input[1]):
            continue
        s_x = float(numpy_helper.to_array(inits[dq_x.input[1]]))
        s_w = numpy_helper.to_array(inits[dq_w.input[1]]).astype(np.float64).reshape(-1)
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
        scale = s_x * (s_w if s_w.size == bias.size else np.full(bias.size, s_w[0]))
        if np.any(scale <= 0):
            continue
        q = np.clip(np.round(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        base = node.name.replace("/", "_") + "_bias"
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, base + "_quantized"),
                numpy_helper.from_array(scale.astype(np.float32), base + "_scale"),
                numpy_helper.from_array(np.zeros(bias.size, np.int32), base + "_zero_point"),
            ]
        )
        dq = onnx.helper.make_node(
            "DequantizeLinear",
            [base + "_quantized", base + "_scale", base + "_zero_point"],
            [base + "_dequantized"],
            name=base + "_DequantizeLinear",
            axis=0,
        )
        node.input[2] = base + "_dequantized"
        new.setdefault(prod[node.input[0]].name, []).append(dq)  # before the Gemm
        done += 1
    _insert_after(graph, new)
    remove_unused_initializers(graph)
    return done
