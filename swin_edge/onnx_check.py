"""Up-front checks that an ONNX file is the kind of model a command expects.

Every command that takes an ONNX image classifier/backbone (quantize, compare, the ONNX Runtime
runner) refuses anything else before doing work, in one line naming the file and what was
expected: one float32 input (N, 3, H, W) with static C/H/W, one or more float outputs, and for
quantization no Q/DQ or integer ops already in the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from .errors import SwinEdgeError

FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "ConvInteger",
    }
)
Shape = tuple[int | None, ...]  # None: a symbolic or unknown dim


@dataclass(frozen=True)
class ImageModelInfo:
    """The I/O of an image model: input name and shape, output names and shapes."""

    input_name: str
    input_shape: Shape
    output_names: tuple[str, ...]
    output_shapes: tuple[Shape, ...]

    def describe(self) -> str:
        """E.g. ``input (3, 224, 224) -> outputs [(1000,)]`` (batch dims left out)."""
        outs = ", ".join(str(s[1:]) for s in self.output_shapes)
        return f"input {self.input_shape[1:]} -> outputs [{outs}]"

    def same_shapes(self, other: ImageModelInfo) -> bool:
        """Same per-image input and output shapes (the batch dim may differ)."""
        return self.input_shape[1:] == other.input_shape[1:] and [
            s[1:] for s in self.output_shapes
        ] == [s[1:] for s in other.output_shapes]


def _shape(value: onnx.ValueInfoProto) -> Shape | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def quantized_ops(model: onnx.ModelProto) -> list[str]:
    """Op types in the main graph that only quantized models hold (sorted, unique)."""
    return sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})


def check_image_model(
    model: onnx.ModelProto, path: str | Path, allow_quantized: bool = True
) -> ImageModelInfo:
    """Raise a one-line :class:`SwinEdgeError` unless ``model`` (read from ``path``) is an image
    model: one float32 input (N, 3, H, W), static C/H/W, one or more float outputs; with
    ``allow_quantized=False`` also unless it is still float (no Q/DQ or integer ops)."""
    expected = "expected an image model: one float32 input (N, 3, H, W) and float outputs"
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise SwinEdgeError(f"'{path}' has {len(inputs)} inputs {names}; {expected}")
    inp = inputs[0]
    shape = _shape(inp)
    elem = inp.type.tensor_type.elem_type
    if (
        elem != onnx.TensorProto.FLOAT
        or shape is None
        or len(shape) != 4
        or shape[1] != 3
        or shape[2] is None
        or shape[3] is None
    ):
        dtype = onnx.TensorProto.DataType.Name(elem).lower() if elem else "non-tensor"
        dims = "of unknown shape" if shape is None else str(tuple(d or "?" for d in shape))
        raise SwinEdgeError(
            f"'{path}' input '{inp.name}' is {dtype} {dims}; {expected} with static C, H, W"
        )
    outputs = list(model.graph.output)
    bad = [o.name for o in outputs if o.type.tensor_type.elem_type not in FLOAT_TYPES]
    if not outputs or bad:
        what = "no outputs" if not outputs else f"non-float outputs {bad}"
        raise SwinEdgeError(f"'{path}' has {what}; {expected}")
    if not allow_quantized and (ops := quantized_ops(model)):
        raise SwinEdgeError(
            f"'{path}' is already quantized (it holds {', '.join(ops)}); quantize the FP32 "
            "model written by `python -m swin_edge export`"
        )
    return ImageModelInfo(
        inp.name,
        shape,
        tuple(o.name for o in outputs),
        tuple(_shape(o) or () for o in outputs),
    )


def load_onnx(path: str | Path, load_external_data: bool = False) -> onnx.ModelProto:
    """Read an ONNX file; a missing or unparsable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise SwinEdgeError(f"'{path}' does not exist; run `python -m swin_edge export` first")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        raise SwinEdgeError(
            f"'{path}' is not a readable ONNX model ({type(e).__name__}); pass a .onnx file "
            "written by `python -m swin_edge export`"
        ) from None


def check_image_model_file(path: str | Path, allow_quantized: bool = True) -> ImageModelInfo:
    """:func:`check_image_model` on a file (weights are not loaded)."""
    return check_image_model(load_onnx(path), path, allow_quantized)
