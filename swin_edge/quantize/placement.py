"""Where Q/DQ goes: a graph analysis that yields the node lists handed to the quantizers."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx

GEMM_OPS = frozenset({"Gemm", "MatMul", "Conv"})
MOVE_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Slice",
        "Concat",
        "Split",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Gather",
    }
)
FLOAT_OPS = frozenset({"LayerNormalization", "Softmax", "Gelu", "Erf", "ReduceMean"})


# Why the cpu recipe keeps every Conv in float (the patch embedding, or a user's conv layers).
CPU_CONV_REASON = (
    "cpu recipe: ONNX Runtime runs a Conv in int8 only as QLinearConv, whose output must be "
    "quantized too; the tensorrt recipe quantizes it"
)


@dataclass
class Placement:
    """Nodes to quantize (compute + data movement) and those kept in float, with the reason
    for each GEMM/MatMul/Conv kept float (``reasons``)."""

    quantize: list[str] = field(default_factory=list)
    keep_float: list[str] = field(default_factory=list)
    gemms: list[str] = field(default_factory=list)
    residual_adds: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def matching(name: str, patterns: Iterable[str]) -> str | None:
    """The first pattern matching a node name, as a glob, or as a substring without wildcard."""
    for pat in patterns:
        if any(c in pat for c in "*?[") and fnmatch.fnmatchcase(name, pat):
            return pat
        if pat in name:
            return pat
    return None


def matches(name: str, patterns: Iterable[str]) -> bool:
    """A pattern matches a node name as a glob, or as a substring when it has no wildcard."""
    return matching(name, patterns) is not None


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.initializer}
    return names | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def plan_placement(
    model: onnx.ModelProto, target: str, keep_float: Sequence[str] = ()
) -> Placement:
    graph = model.graph
    consts = _constant_names(graph)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    out = Placement()
    for n in graph.node:
        if n.op_type in GEMM_OPS and (pat := matching(n.name, keep_float)) is not None:
            out.reasons[n.name] = f"--keep-float {pat}"
        elif target == "cpu" and n.op_type == "Conv":
            # ORT runs a Conv in int8 only as QLinearConv, whose output must be quantized too;
            # the patch embedding feeds a float LayerNorm, so Q/DQ there would only add passes.
            out.reasons[n.name] = CPU_CONV_REASON
    kept = set(out.reasons)
    out.keep_float = sorted(kept)
    gemms = {n.name for n in graph.node if n.op_type in GEMM_OPS and n.name not in kept}
    out.gemms = [n.name for n in graph.node if n.name in gemms]

    memo: dict[str, bool] = {}

    def feeds_only_gemms(node: onnx.NodeProto) -> bool:
        """True if every path from this movement node ends, through movement ops, in a GEMM."""
        if node.name in memo:
            return memo[node.name]
        memo[node.name] = False  # cycle guard
        users = [u for o in node.output for u in consumers.get(o, [])]
        ok = bool(users) and all(
            u.name in gemms or (u.op_type in MOVE_OPS and feeds_only_gemms(u)) for u in users
        )
        memo[node.name] = ok
        return ok

    def reaches_softmax(node: onnx.NodeProto) -> bool:
        users = [u for o in node.output for u in consumers.get(o, [])]
        return any(
            u.op_type == "Softmax" or (u.op_type in MOVE_OPS and reaches_softmax(u)) for u in users
        )

    selected = set(gemms)
    if target == "cpu":
        selected |= {n.name for n in graph.node if n.op_type in MOVE_OPS and feeds_only_gemms(n)}
    else:  # tensorrt: residual sums, never the attention bias/mask add before Softmax
        for n in graph.node:
            if (
                n.op_type == "Add"
                and not any(i in consts for i in n.input)
                and not reaches_softmax(n)
                and not matches(n.name, keep_float)
            ):
                out.residual_adds.append(n.name)
        selected |= set(out.residual_adds)
    out.quantize = [n.name for n in graph.node if n.name in selected]
    return out
