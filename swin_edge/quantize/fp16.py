"""FP16 ONNX for TensorRT: float models, and Q/DQ models whose scales are float16.

In a strongly typed TensorRT network a DequantizeLinear's output has its scale's type. With
float32 scales every op between the INT8 GEMMs (LayerNorm, Softmax, GELU, residual adds,
reshapes, transposes) runs in FP32/TF32; with float16 scales the model is INT8 + FP16 (TensorRT
Model Optimizer's "high-precision dtype" of Q/DQ). :func:`qdq_model_to_fp16` turns a Q/DQ model
into that: the FP16 graph of :func:`float_model_to_fp16` (LayerNorm/Softmax and the I/O kept
FP32) with float16 scales, so every DequantizeLinear outputs FP16.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import SwinEdgeError
from ..utils import atomic_path

# Ops kept in FP32: FP16 overflows in LayerNorm's variance and Softmax's sums.
FP32_OPS = ("LayerNormalization", "Softmax")
# float16 scales for QuantizeLinear/DequantizeLinear need opset 19; 18 -> 19 changes only add
# types/attributes with backward-compatible defaults (Cast, Pad, Reshape, Equal, Q/DQ, ...).
QDQ_FP16_OPSET = 19
_FP16_TINY = float(np.finfo(np.float16).tiny)  # smallest normal float16, 6.1e-5
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# ONNX Runtime's CPU optimizer (WeightBiasQuantization, seen in 1.32) quantizes the 1-D float
# bias of a Q/DQ Gemm/Conv whose output goes to a QuantizeLinear to int32, with scale
# input_scale * weight_scale computed in the scales' type: with float16 scales that product
# (about 1e-6) underflows and the output is garbage. The model is right (TensorRT keeps the
# float bias). Gemm biases are therefore written as (1, N), which that pass skips and Gemm
# broadcasts the same way; swin_edge's ONNX Runtime runner also turns the pass off (Conv).
ORT_FP16_QDQ_DISABLED = ("WeightBiasQuantization",)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _convert(model: onnx.ModelProto, keep_fp32: Iterable[str]) -> onnx.ModelProto:
    """onnxconverter-common's converter with its default block list extended by ``keep_fp32``,
    then fp32 weights of the kept ops restored from the source (no FP16 round trip)."""
    from onnxconverter_common import float16

    original = {i.name: i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT}
    work = onnx.ModelProto()
    work.CopyFrom(model)  # the converter edits its argument in place
    _split_consumed_outputs(work.graph)
    block = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *keep_fp32]))
    with warnings.catch_warnings():  # it warns for every weight below fp16's range
        warnings.simplefilter("ignore", UserWarning)
        fp16 = float16.convert_float_to_float16(work, keep_io_types=True, op_block_list=block)
    _restore_fp32_weights(fp16.graph, original)
    return fp16


def _split_consumed_outputs(graph: onnx.GraphProto) -> int:
    """Give each graph output that other nodes also read (a backbone's stage map that feeds the
    next stage) its own ``Identity``: the converter keeps outputs FP32 with a Cast that takes
    over the output's name, so the inner readers would get the FP32 tensor while typed as FP16.
    Returns the outputs split."""
    read = {i for n in graph.node for i in n.input}
    made = {o for n in graph.node for o in n.output}
    done = 0
    for out in graph.output:
        if out.name not in read or out.name not in made:
            continue
        inner = f"{out.name}_inner"
        for n in graph.node:
            for seq in (n.input, n.output):
                for k, name in enumerate(seq):
                    if name == out.name:
                        seq[k] = inner
        for v in graph.value_info:
            if v.name == out.name:
                v.name = inner
        graph.node.append(
            onnx.helper.make_node("Identity", [inner], [out.name], name=f"{out.name}_Identity")
        )
        done += 1
    return done


def _restore_fp32_weights(graph: onnx.GraphProto, original: dict[str, TensorProto]) -> int:
    """Rewire ``Cast(to=FLOAT)(fp16 initializer)`` to the source's fp32 initializer.

    The converter turns every initializer to FP16 and casts it back before a kept-FP32 op, so
    LayerNorm's weights would lose precision on the way; this gives them their exact values.
    Returns the number of Casts removed.
    """
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)

    def casts_to_fp32(n: onnx.NodeProto) -> bool:
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        return n.op_type == "Cast" and to == TensorProto.FLOAT and n.output[0] not in outputs

    removed = 0
    for src, nodes in readers.items():
        init = inits.get(src)
        if init is None or init.data_type != TensorProto.FLOAT16 or src not in original:
            continue
        casts = [n for n in nodes if casts_to_fp32(n)]
        if not casts:
            continue
        if len(casts) == len(nodes):  # only read through Casts: the fp32 values go back in place
            init.CopyFrom(original[src])
            name = src
            for v in graph.value_info:
                if v.name == src:
                    v.type.tensor_type.elem_type = TensorProto.FLOAT
        else:
            name = f"{src}_fp32"
            copy = TensorProto()
            copy.CopyFrom(original[src])
            copy.name = name
            graph.initializer.append(copy)
        for cast in casts:
            for reader in readers.get(cast.output[0], []):
                for k, i in enumerate(reader.input):
                    if i == cast.output[0]:
                        reader.input[k] = name
            graph.node.remove(cast)
            for v in [v for v in graph.value_info if v.name == cast.output[0]]:
                graph.value_info.remove(v)
            removed += 1
    return removed


def float_model_to_fp16(
    model: onnx.ModelProto, keep_fp32: Iterable[str] = FP32_OPS
) -> onnx.ModelProto:
    """FP32 model -> FP16 model; ``keep_fp32`` op types (and the graph I/O) stay FP32. Checked
    with ONNX's type-checking shape inference (a strongly typed TensorRT network takes the
    types as written)."""
    fp16 = _convert(model, keep_fp32)
    _check_types(fp16, "FP16 model")
    return fp16


def _fp16_scale(scale: np.ndarray) -> np.ndarray:
    """The float16 value each scale will have, as float32 (normal float16, never zero)."""
    return np.clip(scale, _FP16_TINY, float(np.finfo(np.float16).max)).astype(np.float16)


def _prepare_scales(model: onnx.ModelProto) -> int:
    """Round every Q/DQ scale to its float16 value in place (still stored as float32).

    Weights (int8 initializers behind a DequantizeLinear) are requantized to the rounded scale,
    so ``q * scale`` keeps its value; a scale below float16's smallest normal is raised to it.
    Returns the number of weight tensors whose int8 values changed.
    """
    inits = {i.name: i for i in model.graph.initializer}
    changed = 0
    done: set[str] = set()
    for n in model.graph.node:
        if n.op_type not in _QDQ or n.input[1] not in inits:
            continue
        sname = n.input[1]
        s_old = numpy_helper.to_array(inits[sname]).astype(np.float32)
        if inits[sname].data_type != TensorProto.FLOAT:
            raise SwinEdgeError(
                f"Q/DQ node '{n.name}' has a {TensorProto.DataType.Name(inits[sname].data_type)} "
                "scale; only float32 scales can be converted to float16"
            )
        s_new = _fp16_scale(s_old).astype(np.float32)
        data = n.input[0]
        if n.op_type == "DequantizeLinear" and data in inits and data not in done:
            q = numpy_helper.to_array(inits[data])
            if q.dtype == np.int8:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                shape = [1] * q.ndim
                if s_old.ndim == 1 and q.ndim:
                    shape[axis % q.ndim] = -1
                ratio = (s_old / s_new).reshape(shape) if s_old.ndim else s_old / s_new
                q_new = np.clip(np.rint(q.astype(np.float64) * ratio), -128, 127).astype(np.int8)
                if not np.array_equal(q, q_new):
                    inits[data].CopyFrom(numpy_helper.from_array(q_new, data))
                    changed += 1
                done.add(data)
        if sname not in done:
            inits[sname].CopyFrom(numpy_helper.from_array(s_new.reshape(s_old.shape), sname))
            done.add(sname)
    return changed


def _gemm_biases_2d(model: onnx.ModelProto) -> int:
    """Rewrite the 1-D bias of every Q/DQ Gemm as (1, N) (same broadcast; see above)."""
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    done = 0
    for n in model.graph.node:
        if n.op_type != "Gemm" or len(n.input) < 3 or n.input[2] not in inits:
            continue
        a = producers.get(n.input[0])
        if a is None or a.op_type != "DequantizeLinear" or len(inits[n.input[2]].dims) != 1:
            continue
        bias = numpy_helper.to_array(inits[n.input[2]]).reshape(1, -1)
        if readers[n.input[2]] == 1:
            inits[n.input[2]].CopyFrom(numpy_helper.from_array(bias, n.input[2]))
            for vi in [v for v in model.graph.value_info if v.name == n.input[2]]:
                model.graph.value_info.remove(vi)  # its recorded shape is the 1-D one
        else:
            name = f"{n.input[2]}_2d"
            if name not in inits:
                inits[name] = numpy_helper.from_array(bias, name)
                model.graph.initializer.append(inits[name])
            n.input[2] = name
        done += 1
    return done


def qdq_model_to_fp16(
    model: onnx.ModelProto, keep_fp32: Iterable[str] = FP32_OPS
) -> onnx.ModelProto:
    """Q/DQ model with float32 scales -> INT8 + FP16 model with float16 scales (opset >= 19)."""
    if not any(n.op_type in _QDQ for n in model.graph.node):
        raise SwinEdgeError("the model has no QuantizeLinear/DequantizeLinear nodes to convert")
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if _opset(work) < QDQ_FP16_OPSET:
        for o in work.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = QDQ_FP16_OPSET
    _prepare_scales(work)
    _gemm_biases_2d(work)
    fp16 = _convert(work, keep_fp32)
    check_fp16_qdq(fp16)
    return fp16


def check_fp16_qdq(model: onnx.ModelProto) -> None:
    """Raise unless every Q/DQ scale is float16, every QuantizeLinear's input is float16, and
    the model passes ONNX's type-checking shape inference."""
    inits = {i.name: i for i in model.graph.initializer}
    bad = [
        n.name
        for n in model.graph.node
        if n.op_type in _QDQ
        and (n.input[1] not in inits or inits[n.input[1]].data_type != TensorProto.FLOAT16)
    ]
    if bad:
        raise SwinEdgeError(f"{len(bad)} Q/DQ nodes without a float16 scale, e.g. '{bad[0]}'")
    inferred = _check_types(model, "FP16 Q/DQ model")
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types |= {v.name: v.type.tensor_type.elem_type for v in inferred.graph.input}
    for n in inferred.graph.node:
        if n.op_type == "QuantizeLinear" and types.get(n.input[0]) != TensorProto.FLOAT16:
            raise SwinEdgeError(f"QuantizeLinear '{n.name}' quantizes a non-float16 tensor")


def _check_types(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    """The model with inferred types, or a one-line error where ONNX's type check fails."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # onnx raises InferenceError / ValidationError subclasses
        raise SwinEdgeError(f"{what} is not type-consistent: {str(e)[:300]}") from None


def has_fp16_scales(model: onnx.ModelProto) -> bool:
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return any(
        n.op_type in _QDQ and inits.get(n.input[1]) == TensorProto.FLOAT16 for n in model.graph.node
    )


def ort_disabled_optimizers(model: onnx.ModelProto) -> list[str]:
    """ONNX Runtime optimizers to disable for ``model`` (``disabled_optimizers=``)."""
    return list(ORT_FP16_QDQ_DISABLED) if has_fp16_scales(model) else []


def onnx_to_fp16_file(
    src: str | Path, out: str | Path, keep_fp32: Iterable[str] = FP32_OPS
) -> Path:
    """File version of :func:`float_model_to_fp16` / :func:`qdq_model_to_fp16` (picked by
    whether the model has Q/DQ nodes), written atomically."""
    model = onnx.load(str(src))
    has_qdq = any(n.op_type in _QDQ for n in model.graph.node)
    fp16 = qdq_model_to_fp16(model, keep_fp32) if has_qdq else float_model_to_fp16(model, keep_fp32)
    with atomic_path(out) as tmp:
        onnx.save(fp16, str(tmp))
    return Path(out)


__all__ = [
    "FP32_OPS",
    "QDQ_FP16_OPSET",
    "ORT_FP16_QDQ_DISABLED",
    "check_fp16_qdq",
    "float_model_to_fp16",
    "has_fp16_scales",
    "onnx_to_fp16_file",
    "ort_disabled_optimizers",
    "qdq_model_to_fp16",
]
