"""Static-graph linter: fails when dynamic-shape ops or ops TensorRT cannot parse remain."""

from __future__ import annotations

from collections import Counter
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
    dyn = sorted(op for op in counts if op in DYNAMIC_OPS)
    if dyn:
        errs.append("dynamic-shape ops: " + ", ".join(f"{op} x{counts[op]}" for op in dyn))
    unsupported = sorted(op for op in counts if op not in TENSORRT_OPS and op not in DYNAMIC_OPS)
    if unsupported:
        errs.append("ops outside TensorRT's ONNX support: " + ", ".join(unsupported))
    for node in graph.node:
        for idx in SHAPE_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx] and node.input[idx] not in constants:
                errs.append(f"dynamic {node.op_type} '{node.name}' (input {idx} is computed)")
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
