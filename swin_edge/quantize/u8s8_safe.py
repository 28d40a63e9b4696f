"""7-bit GEMM inputs: INT8 models that x86 CPUs without VNNI run exactly with their fast kernels.

On AVX2 (and AVX-512 without VNNI) both ONNX Runtime and OpenVINO multiply uint8 activations by
int8 weights with ``vpmaddubsw``, which sums each neighbouring pair of products in saturating
int16 (see :mod:`swin_edge.backends.onnxrt_u8s8`). With activation codes of at most 127, a pair
is at most 2 * 127 * 127 = 32258 and never clamps, so the fast kernels are exact. This pass
puts every uint8 grid that feeds a weight GEMM on 128 levels over the calibrated range (scale
x 255/127, zero point x 127/255): one bit of activation resolution for exactness on those CPUs
in every runtime, including servers that cannot switch ONNX Runtime to its exact u8u8 kernels
(Triton's ONNX Runtime backend). Inputs beyond the calibrated range can still reach codes above
129 and clamp there. Measured cost: the digits Swin 38.2 -> 34.8 dB SQNR, Swin-T (random weights)
32.8 -> 30.4 dB; on the fast kernels of an AVX2 CPU the 8-bit grid gives 22.6 and 27.9 dB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..backends.onnxrt_lowering import _const, _dq_parts, u8s8_operands
from ..errors import SwinEdgeError
from ..onnx_graph import remove_unused_initializers
from ..utils import atomic_path
from .placement import MOVE_OPS

GEMM_INPUT_BITS_KEY = "swin_edge.gemm_input_bits"  # model metadata: "7" after this pass
LEVELS = 127  # codes 0..127 over the calibrated range


def gemm_input_bits(model: onnx.ModelProto) -> int:
    """7 for a model this pass wrote, else 8."""
    value = next((p.value for p in model.metadata_props if p.key == GEMM_INPUT_BITS_KEY), "8")
    return 7 if value == "7" else 8


def _sources(name: str, prod: dict[str, onnx.NodeProto]) -> set[str] | None:
    """The QuantizeLinear nodes whose codes reach tensor ``name`` through data movement only
    (by output name), or None when something else (or nothing) produces them."""
    node = prod.get(name)
    if node is None:
        return None
    if node.op_type == "QuantizeLinear":
        return {node.output[0]}
    if node.op_type not in MOVE_OPS:
        return None
    data = node.input if node.op_type == "Concat" else node.input[:1]
    found: set[str] = set()
    for i in data:
        s = _sources(i, prod)
        if s is None:
            return None
        found |= s
    return found


def _grid(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor uint8 QuantizeLinear or DequantizeLinear with
    constant parameters (both take x, scale, zero point)."""
    if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
        return None
    scale, zp = _const(inits, node.input[1]), _const(inits, node.input[2])
    if scale.size != 1 or zp.size != 1 or zp.dtype != np.uint8:
        return None
    return float(scale.reshape(())), int(zp.reshape(()))


def _requantized_from(
    q: onnx.NodeProto, prod: dict[str, onnx.NodeProto], inits: dict[str, onnx.TensorProto]
) -> set[str]:
    """The Qs whose codes ``q`` merely re-quantizes: its input is ``DQ -> data movement`` with
    the same grid (ONNX Runtime's Q/DQ format around Reshape/Transpose; its optimizer drops such
    DQ -> Q pairs, so they must stay identical)."""
    grid = _grid(q, inits)
    found: set[str] = set()
    todo = [q.input[0]]
    while todo:
        node = prod.get(todo.pop())
        if node is None:
            return set()
        if node.op_type in MOVE_OPS:
            todo += node.input if node.op_type == "Concat" else node.input[:1]
        elif node.op_type == "DequantizeLinear" and _grid(node, inits) == grid:
            found |= _sources(node.input[0], prod) or set()
        else:
            return set()
    return found


def narrow_gemm_inputs(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place: every uint8 activation grid feeding a u8 x s8 weight GEMM gets
    codes 0..127, with the Qs that only re-quantize the same codes around data movement, every
    DQ of those codes and the GEMMs' int32 biases; mark it with :data:`GEMM_INPUT_BITS_KEY`.
    Returns how many QuantizeLinear nodes changed. Refuses a model where such a GEMM input does
    not come from per-tensor uint8 QuantizeLinear nodes, and one this pass already wrote (a
    second pass would leave 64 levels)."""
    if gemm_input_bits(model) == 7:
        raise SwinEdgeError(f"its GEMM inputs are already 7-bit ({GEMM_INPUT_BITS_KEY})")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    q_by_out = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    gemms: list[tuple[onnx.NodeProto, set[str]]] = []
    for n in graph.node:
        operands = u8s8_operands(n, prod, inits)  # int8 activations (tensorrt recipe): none
        if operands is None:
            continue
        sources = _sources(operands[0][0], prod)
        if not sources:
            raise SwinEdgeError(f"{n.name}: its input codes do not come from a QuantizeLinear")
        gemms.append((n, sources))
    # every Q of a GEMM input, and the Qs linked to it by same-grid re-quantization (both ways)
    linked: dict[str, set[str]] = {out: set() for out in q_by_out}
    for out, q in q_by_out.items():
        for up in _requantized_from(q, prod, inits):
            linked[out].add(up)
            linked[up].add(out)
    narrowed: set[str] = set()
    todo = [out for _, sources in gemms for out in sources]
    while todo:
        out = todo.pop()
        if out not in narrowed:
            narrowed.add(out)
            todo += linked[out]
    new: dict[tuple[float, int], tuple[str, str, float]] = {}
    assigned: dict[str, tuple[str, str, float]] = {}  # Q output -> (scale, zero point, s7)
    for out in sorted(narrowed):
        q = q_by_out[out]
        grid = _grid(q, inits)
        if grid is None:
            raise SwinEdgeError(f"{q.name}: not a per-tensor uint8 grid with constant parameters")
        if grid not in new:
            s, z = grid
            s7 = s * 255.0 / LEVELS
            z7 = int(np.clip(round(z * LEVELS / 255.0), 0, LEVELS))
            base = f"{q.name or out}/gemm_input_7bit"
            dtype = _const(inits, q.input[1]).dtype
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array(s7, dtype), f"{base}_scale"),
                    numpy_helper.from_array(np.array(z7, np.uint8), f"{base}_zero_point"),
                ]
            )
            new[grid] = (f"{base}_scale", f"{base}_zero_point", s7)
        assigned[out] = new[grid]
        q.input[1], q.input[2] = new[grid][:2]
    for n in graph.node:  # every DQ of narrowed codes
        if n.op_type != "DequantizeLinear":
            continue
        sources = _sources(n.input[0], prod)
        if not sources or not sources & narrowed:
            continue
        if not sources <= narrowed or len({assigned[s] for s in sources}) != 1:
            raise SwinEdgeError(f"{n.name}: its codes mix grids that cannot all narrow")
        scale_name, zp_name, _ = assigned[next(iter(sources))]
        del n.input[1:]
        n.input.extend([scale_name, zp_name])
    for n, sources in gemms:
        _requantize_bias(n, assigned[next(iter(sources))][2], prod, inits, graph)
    remove_unused_initializers(graph)
    meta = {p.key: p for p in model.metadata_props}
    entry = meta.get(GEMM_INPUT_BITS_KEY) or model.metadata_props.add()
    entry.key, entry.value = GEMM_INPUT_BITS_KEY, "7"
    return len(narrowed)


def _requantize_bias(
    gemm: onnx.NodeProto,
    act_scale: float,
    prod: dict[str, onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    graph: onnx.GraphProto,
) -> None:
    """An int32 Q/DQ bias keeps the scale ONNX Runtime's QGemm fusion expects: act x weight."""
    if gemm.op_type != "Gemm" or len(gemm.input) < 3 or not gemm.input[2]:
        return
    bias = _dq_parts(prod.get(gemm.input[2]), inits)
    w = _dq_parts(prod.get(gemm.input[1]), inits)
    if bias is None or bias[0] not in inits or _const(inits, bias[0]).dtype != np.int32:
        return
    q = _const(inits, bias[0]).astype(np.float64)
    old_scale = _const(inits, bias[1])
    w_scale = _const(inits, w[1]).astype(np.float64)
    if old_scale.size != w_scale.size:
        raise SwinEdgeError(f"{gemm.name}: bias and weight scales differ in shape")
    new_scale = (act_scale * w_scale).astype(old_scale.dtype).reshape(old_scale.shape)
    real = q * old_scale.astype(np.float64)  # zero point 0 for int32 biases
    new_q = np.clip(np.round(real / new_scale.astype(np.float64)), -(2**31), 2**31 - 1)
    base = f"{gemm.name or gemm.output[0]}/bias_7bit_input"
    dq = prod[gemm.input[2]]
    graph.initializer.extend(
        [
            numpy_helper.from_array(new_q.astype(np.int32), f"{base}_q"),
            numpy_helper.from_array(new_scale, f"{base}_scale"),
        ]
    )
    dq.input[0], dq.input[1] = f"{base}_q", f"{base}_scale"


def narrow_file(src: str | Path, dst: str | Path) -> Path:
    """:func:`narrow_gemm_inputs` of ``src`` written to ``dst`` atomically."""
    model = onnx.load(str(src))
    narrow_gemm_inputs(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Path(dst)


def seven_bit_candidate(src: str | Path, dst: str | Path) -> tuple[Path | None, str | None]:
    """:func:`narrow_file` for an optional 7-bit candidate: (its path, None), or (None, why)
    when the pass refuses the model, which then deploys with 8 bits only."""
    try:
        return narrow_file(src, dst), None
    except SwinEdgeError as e:
        return None, str(e)
