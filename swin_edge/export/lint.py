"""Static-graph linter: fails when dynamic-shape ops or ops TensorRT cannot parse remain."""

from __future__ import annotations

import ast
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import onnx

# Ops that compute shapes at run time: a static Swin graph never needs them.
DYNAMIC_OPS = frozenset({"Shape", "Size", "Mod", "NonZero", "ConstantOfShape", "Range"})

# Inputs that carry shapes/indices and must be constants for the graph to be static.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Unsqueeze": (1,),
    "Squeeze": (1,),
    "Split": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "TopK": (1,),
}

# ONNX ops the TensorRT 10 ONNX parser supports (onnx-tensorrt docs/operators.md), minus
# those listed above as dynamic.
TENSORRT_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Celu Clip Concat Constant Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
    GridSample GroupNormalization HardSigmoid HardSwish Identity InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LRN MatMul Max
    MaxPool Mean Min Mul Neg Not OneHot Or Pad Pow PRelu QuantizeLinear Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize Round ScatterElements ScatterND Selu Sigmoid Sign Sin Sinh
    Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Where Xor""".split()
)

MIN_OPSET = 17

# Node metadata torch's dynamo exporter writes (`export` keeps it while it lints).
STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"
CLASS_KEY = "pkg.torch.onnx.class_hierarchy"
SCOPES_KEY = "pkg.torch.onnx.name_scopes"

# Per dynamic op: what the code that produced it does, and what to change.
FIXES = {
    "Shape": ("shape read from a tensor", "compute it from the config (Python ints; -1 for batch)"),
    "Size": ("size read from a tensor", "compute it from the config (Python ints)"),
    "Mod": ("% on a run-time size", "compute it from the config (Python ints)"),
    "NonZero": (
        "data-dependent torch.nonzero/boolean indexing",
        "use a fixed-size mask (multiply or torch.where)",
    ),
    "ConstantOfShape": (
        "tensor created with a run-time size",
        "create it with sizes from the config, or once as a buffer",
    ),
    "Range": ("torch.arange over a run-time size", "build it once at construction as a buffer"),
}
COMPUTED_FIX = "its shape input is computed at run time; pass Python ints from the config"
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n[ \t]*([^\n]*)')
_LIBRARY = re.compile(
    r"(^|/)(site|dist)-packages/(torch|onnxscript|functorch)/|^(torch|onnxscript)/"
)


def is_library_file(path: str) -> bool:
    """Whether a source path is torch's or onnxscript's own code (not the model's)."""
    return path.startswith("<") or bool(_LIBRARY.search(path.replace(os.sep, "/")))


def _short_path(path: str) -> str:
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith("..") else rel


def _meta(node: onnx.NodeProto, key: str) -> str:
    return next((p.value for p in node.metadata_props if p.key == key), "")


def _literal_list(text: str) -> list[str]:
    """A metadata list such as ``['', 'layers', 'layers.0']`` (a Python literal), or []."""
    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def node_origin(node: onnx.NodeProto) -> str | None:
    """``file.py:42 in module 'layers.0.attn' (Class): `code``` from the exporter's metadata:
    the innermost frame of the node's stack trace outside torch's own code."""
    frames = _FRAME.findall(_meta(node, STACK_TRACE_KEY))
    frame = next((f for f in reversed(frames) if not is_library_file(f[0])), None)
    if frame is None:
        return None
    file, line, code = frame
    scopes = [x for x in _literal_list(_meta(node, SCOPES_KEY)) if x]
    classes = _literal_list(_meta(node, CLASS_KEY))
    module = scopes[-2] if len(scopes) > 1 else ""
    cls = classes[-2].rsplit(".", 1)[-1] if len(classes) > 1 else ""
    where = f"module '{module}' ({cls})" if module else f"{cls or 'the model'}.forward"
    return f"{_short_path(file)}:{line} in {where}: `{code.strip()[:80]}`"


def _origins(nodes: list[onnx.NodeProto], consumers: dict[str, list[onnx.NodeProto]]) -> list[str]:
    """Distinct source locations of ``nodes``: each node's own, else the nearest found among
    the nodes that use its outputs (a hoisted ``x.shape`` read has none; its users have)."""
    found: list[str] = []
    for node in nodes:
        queue, seen, where = [node], set(), None
        while queue and where is None and len(seen) < 64:
            n = queue.pop(0)
            if id(n) not in seen:
                seen.add(id(n))
                where = node_origin(n)
                queue += [u for o in n.output for u in consumers.get(o, [])]
        if where is not None and where not in found:
            found.append(where)
    return found


def _located(what: str, fix: str, origins: list[str], limit: int = 3) -> str:
    more = f" (+{len(origins) - limit} more)" if len(origins) > limit else ""
    return f"{what} at " + "; ".join(origins[:limit]) + more + f"; {fix}"


def _non_tensorrt_qdq(graph: onnx.GraphProto) -> int:
    """Count Q/DQ nodes TensorRT rejects: uint8/int32 grids or non-zero zero points."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    bad = 0
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            bad += n.op_type == "QuantizeLinear"  # no zero point: the output is uint8
        elif zp.data_type != onnx.TensorProto.INT8 or numpy_helper.to_array(zp).any():
            bad += 1
    return bad


@dataclass
class LintReport:
    """Result of :func:`lint_onnx`; ``ok`` is False when any error was found."""

    num_nodes: int
    op_counts: dict[str, int]
    opset: int
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        head = f"{self.num_nodes} nodes, opset {self.opset}"
        return head + (
            "; static and TensorRT-parsable" if self.ok else "; " + "; ".join(self.errors)
        )


def lint_onnx(model: onnx.ModelProto | str | Path, allow_dynamic_batch: bool = True) -> LintReport:
    """Check an ONNX model is static (only the batch dim may be symbolic) and TensorRT-parsable."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    counts = Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in graph.node
    )
    report = LintReport(len(graph.node), dict(counts.most_common()), opset)
    errs = report.errors
    if opset < MIN_OPSET:
        errs.append(f"opset {opset} < {MIN_OPSET}")
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # to trace source lines
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    dyn = sorted(op for op in counts if op in DYNAMIC_OPS)
    if dyn:
        parts = []
        for op in dyn:
            origins = _origins([n for n in graph.node if n.op_type == op], consumers)
            hint = f" [{_located(*FIXES[op], origins)}]" if origins else ""
            parts.append(f"{op} x{counts[op]}{hint}")
        errs.append("dynamic-shape ops: " + ", ".join(parts))
    unsupported = sorted(op for op in counts if op not in TENSORRT_OPS and op not in DYNAMIC_OPS)
    if unsupported:
        errs.append("ops outside TensorRT's ONNX support: " + ", ".join(unsupported))
    for node in graph.node:
        for idx in SHAPE_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx] and node.input[idx] not in constants:
                origins = _origins([node], consumers)
                where = f": {_located(node.op_type, COMPUTED_FIX, origins)}" if origins else ""
                errs.append(
                    f"dynamic {node.op_type} '{node.name}' (input {idx} is computed{where})"
                )
                break
    bad_qdq = _non_tensorrt_qdq(graph)
    if bad_qdq:
        errs.append(
            f"{bad_qdq} Q/DQ nodes are not symmetric int8 (TensorRT needs int8 with zero "
            "point 0: quantize with --target tensorrt)"
        )
    for vi in list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            static = d.HasField("dim_value")
            if not static and not (i == 0 and allow_dynamic_batch):
                errs.append(f"'{vi.name}' dim {i} is symbolic ('{d.dim_param}'); only batch may be")
    return report
