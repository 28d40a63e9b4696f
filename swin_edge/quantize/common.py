"""Shared pieces of the quantization engines: input batching, result, Q/DQ checks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import SwinEdgeError
from .recipe import QuantRecipe


@dataclass
class QuantResult:
    path: Path
    recipe: QuantRecipe
    num_calibration: int
    quantized_nodes: list[str] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    qdq_counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # kept-float node -> why

    def placement(self, op_types: dict[str, str] | None = None) -> dict:
        """For reports: the recipe, GEMM/MatMul/Conv nodes quantized (per op type when
        ``op_types`` maps names to ops) and every node kept float with its reason."""
        by_op: dict[str, int] = {}
        for name in self.quantized_nodes:
            op = (op_types or {}).get(name)
            if op in ("Gemm", "MatMul", "Conv"):
                by_op[op] = by_op.get(op, 0) + 1
        return {
            "recipe": self.recipe.target,
            "engine": self.recipe.engine,
            "quantized": list(self.quantized_nodes),
            "quantized_by_op": by_op,
            "kept_float": {n: self.reasons.get(n, "kept float") for n in self.kept_float},
        }


def input_info(model: onnx.ModelProto) -> tuple[str, int | None]:
    """Name and static batch size (None when symbolic) of the single image input."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise SwinEdgeError(f"expected one image input, found {[i.name for i in inputs]}")
    dim0 = inputs[0].type.tensor_type.shape.dim[0]
    return inputs[0].name, (dim0.dim_value if dim0.HasField("dim_value") else None)


def iter_batches(images: np.ndarray, batch: int | None) -> Iterator[np.ndarray]:
    """Chunks matching the model's static batch (the tail is filled by repeating images)."""
    b = batch or 1
    for i in range(0, len(images), b):
        chunk = images[i : i + b]
        if len(chunk) < b:  # fill the static batch by repeating images cyclically
            chunk = np.resize(chunk, (b, *images.shape[1:]))
        yield np.ascontiguousarray(chunk, dtype=np.float32)


def qdq_summary(model: onnx.ModelProto) -> dict[str, int]:
    return dict(
        Counter(
            n.op_type
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
        )
    )


def check_symmetric_int8(model: onnx.ModelProto) -> None:
    """Raise unless every activation Q/DQ is int8 with zero point 0 (what TensorRT requires)."""
    inits = {i.name: i for i in model.graph.initializer}
    bad = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        zp = inits.get(n.input[2])
        if zp is None:
            continue
        arr = numpy_helper.to_array(zp)
        if arr.dtype not in (np.int8, np.int32) or np.any(arr != 0):
            bad.append(n.name)
    if bad:
        raise SwinEdgeError(f"{len(bad)} Q/DQ nodes are not symmetric int8, e.g. {bad[0]}")
