"""The `tensorrt` recipe is INT8 + FP16: Q/DQ with float16 scales on the FP16 graph."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from swin_edge.backends.onnxrt import OnnxrtRunner
from swin_edge.calibration import load_images
from swin_edge.errors import SwinEdgeError
from swin_edge.export import lint_onnx, torch_to_onnx
from swin_edge.metrics import fidelity
from swin_edge.model import SwinTransformer
from swin_edge.quantize import QuantRecipe, check_symmetric_int8, quantize_onnx
from swin_edge.quantize.fp16 import (
    QDQ_FP16_OPSET,
    check_fp16_qdq,
    float_model_to_fp16,
    ort_disabled_optimizers,
    qdq_model_to_fp16,
)

from .conftest import TINY


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("q16") / "tiny.onnx"
    model = SwinTransformer(TINY).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero biases and LayerNorm weights that are not all ones
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
            elif "norm" in name:
                p.normal_(1, 0.1)
    torch_to_onnx(model, path)
    return path


@pytest.fixture(scope="module")
def calib():
    return load_images(None, TINY.preprocess, use_cache=False).images


@pytest.fixture(scope="module")
def pair(fp32, calib, tmp_path_factory):
    """The tensorrt recipe with its default float16 scales and with float32 scales."""
    d = tmp_path_factory.mktemp("pair")
    fp16 = quantize_onnx(fp32, d / "q16.onnx", calib, QuantRecipe(target="tensorrt"))
    fp32s = quantize_onnx(
        fp32, d / "q32.onnx", calib, QuantRecipe(target="tensorrt", scale_dtype="fp32")
    )
    return fp16.path, fp32s.path


def run(path, x, disabled=None):
    if disabled is None:
        disabled = ort_disabled_optimizers(onnx.load(str(path)))
    sess = ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )
    return np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def test_tensorrt_recipe_has_float16_scales_and_fp16_dq_outputs(fp32, calib, pair):
    q16, q32 = pair
    model = onnx.load(str(q16))
    inits = {i.name: i for i in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert dq and q
    assert all(inits[n.input[1]].data_type == TensorProto.FLOAT16 for n in dq + q)
    check_fp16_qdq(model)  # float16 Q inputs, ONNX's type-checking shape inference passes
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in dq)  # DQ outputs are FP16
    onnx.checker.check_model(model, full_check=True)
    check_symmetric_int8(model)
    assert lint_onnx(model, allow_dynamic_batch=False).ok
    assert next(o.version for o in model.opset_import if o.domain == "") >= QDQ_FP16_OPSET
    io = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert set(io.values()) == {TensorProto.FLOAT}  # FP32 I/O
    # GEMMs, biases and everything between them are FP16; LayerNorm/Softmax compute in FP32
    nodes = model.graph.node
    gemm_b = [inits[n.input[2]] for n in nodes if n.op_type == "Gemm" and len(n.input) > 2]
    assert gemm_b and all(b.data_type == TensorProto.FLOAT16 for b in gemm_b)
    for n in model.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(n.output[0], TensorProto.FLOAT) == TensorProto.FLOAT
        if n.op_type == "LayerNormalization":  # weights kept FP32, no FP16 round trip
            assert all(inits[i].data_type == TensorProto.FLOAT for i in n.input[1:])
    # the float32-scale option keeps today's model
    m32 = onnx.load(str(q32))
    i32 = {i.name: i for i in m32.graph.initializer}
    scales = [i32[n.input[1]] for n in m32.graph.node if n.op_type == "DequantizeLinear"]
    assert scales and all(s.data_type == TensorProto.FLOAT for s in scales)


def test_fp16_scales_keep_the_recipes_fidelity(fp32, calib, pair):
    q16, q32 = pair
    x = calib[:8]
    ref = run(fp32, x)
    out16 = run(q16, x)
    assert out16.dtype == np.float32
    f16, f32 = fidelity(ref, out16), fidelity(ref, run(q32, x))
    assert f16.cosine > 0.98  # the tensorrt recipe's bound (tests/test_quantize.py)
    assert f16.top1_agreement >= f32.top1_agreement - 0.125  # at most one of 8 images flips
    assert f16.sqnr_db > f32.sqnr_db - 1.5
    stock = fidelity(ref, run(q16, x, disabled=[]))  # plain ONNX Runtime, every pass on
    assert stock.cosine > 0.98 and abs(stock.sqnr_db - f16.sqnr_db) < 0.5
    with OnnxrtRunner(q16) as r:
        assert fidelity(ref, r.infer_all(x)).cosine > 0.98
    assert ort_disabled_optimizers(onnx.load(str(q16))) == ["WeightBiasQuantization"]
    assert ort_disabled_optimizers(onnx.load(str(q32))) == []


def test_layernorm_weights_keep_exact_fp32_values(fp32):
    src = onnx.load(str(fp32))
    orig = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    model = float_model_to_fp16(src)
    inits = {i.name: i for i in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    lns = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert lns
    for n in lns:
        for name in n.input[1:]:
            assert name not in prod  # no Cast(fp16 -> fp32) in front of the weights
            w = numpy_helper.to_array(inits[name])
            base = name.removesuffix("_fp32")
            assert w.dtype == np.float32 and np.array_equal(w, orig[base])
            assert not np.array_equal(w, w.astype(np.float16).astype(np.float32))  # not rounded
    onnx.checker.check_model(model, full_check=True)


def test_converter_block_list_extends_the_default(fp32, monkeypatch):
    from onnxconverter_common import float16

    seen = {}
    real = float16.convert_float_to_float16

    def spy(model, **kw):
        seen.update(kw)
        return real(model, **kw)

    monkeypatch.setattr(float16, "convert_float_to_float16", spy)
    float_model_to_fp16(onnx.load(str(fp32)))
    block = set(seen["op_block_list"])
    assert set(float16.DEFAULT_OP_BLOCK_LIST) <= block
    assert {"LayerNormalization", "Softmax"} <= block


def _tiny_qdq(weight_scale: np.ndarray, q: np.ndarray) -> onnx.ModelProto:
    """x -> Q/DQ -> MatMul(DQ(int8 weight, per-column scale))."""
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(q, "wq"),
        numpy_helper.from_array(weight_scale, "ws"),
        numpy_helper.from_array(np.zeros(len(weight_scale), np.int8), "wzp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "zp"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["w"], name="wdq", axis=1),
        helper.make_node("MatMul", ["xd", "w"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_tiny_weight_scales_are_requantized_not_flushed():
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (4, 3)).astype(np.int8)
    scale = np.array([1e-2, 3e-6, 1e-9], np.float32)  # the last two are below fp16's normal range
    model = qdq_model_to_fp16(_tiny_qdq(scale, q))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    s16 = inits["ws"]
    assert s16.dtype == np.float16 and (s16 >= np.finfo(np.float16).tiny).all()
    w_before = q.astype(np.float64) * scale
    w_after = inits["wq"].astype(np.float64) * s16.astype(np.float64)
    # each column keeps its values up to half a step of its (new) grid
    assert (np.abs(w_after - w_before) <= 0.5 * s16.astype(np.float64) + 1e-12).all()
    np.testing.assert_array_equal(inits["wq"][:, 0], q[:, 0])  # a normal scale is untouched
    x = rng.standard_normal((2, 4)).astype(np.float32)
    a = ort.InferenceSession(
        _tiny_qdq(scale, q).SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})[0]
    b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    assert np.abs(a - b).max() < 2e-3 * (np.abs(a).max() + 1e-3)


def test_an_output_that_feeds_other_nodes_stays_type_consistent():
    """A backbone's stage map is a graph output and the next stage's input: the converter's
    FP32 output Cast must not hand the FP32 tensor to FP16 readers."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (4, 3)).astype(np.int8)
    w2 = numpy_helper.from_array(rng.standard_normal((3, 2)).astype(np.float32), "w2")
    z_out = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 2])
    qdq = _tiny_qdq(np.full(3, 0.01, np.float32), q)
    float_model = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
            "g",
            list(qdq.graph.input),
            list(qdq.graph.output),
            [numpy_helper.from_array(q.astype(np.float32) * 0.01, "w")],
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    for model in (qdq, float_model):
        model.graph.initializer.append(w2)
        model.graph.node.append(helper.make_node("MatMul", ["y", "w2"], ["z"], name="mm2"))
        model.graph.output.append(z_out)  # y is an output and mm2's input
    x = rng.standard_normal((2, 4)).astype(np.float32)

    def outputs(model):
        sess = ort.InferenceSession(
            model.SerializeToString(),
            providers=["CPUExecutionProvider"],
            disabled_optimizers=ort_disabled_optimizers(model),
        )
        return [o.name for o in sess.get_outputs()], sess.run(None, {"x": x})

    for convert, src in ((qdq_model_to_fp16, qdq), (float_model_to_fp16, float_model)):
        model = convert(src)  # qdq_model_to_fp16 checks the types itself
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        names, (y, z) = outputs(model)
        assert names == ["y", "z"] and y.dtype == z.dtype == np.float32
        _, (y0, z0) = outputs(src)
        np.testing.assert_allclose(y, y0, atol=2e-3 * np.abs(y0).max())
        np.testing.assert_allclose(z, z0, atol=2e-3 * np.abs(z0).max())


def test_bad_inputs():
    with pytest.raises(SwinEdgeError, match="no QuantizeLinear/DequantizeLinear"):
        qdq_model_to_fp16(helper.make_model(helper.make_graph([], "g", [], [])))
    with pytest.raises(SwinEdgeError, match="--scale-dtype fp16 is for --target tensorrt"):
        QuantRecipe(target="cpu", scale_dtype="fp16")
    with pytest.raises(SwinEdgeError, match="--scale-dtype 'bf16'"):
        QuantRecipe(target="tensorrt", scale_dtype="bf16")
    assert QuantRecipe(target="tensorrt").fp16_scales
    assert not QuantRecipe(target="tensorrt", scale_dtype="fp32").fp16_scales
    assert not QuantRecipe(target="cpu").fp16_scales


def test_per_layer_sqnr_reads_fp16_gemm_outputs(fp32, calib, pair):
    from swin_edge.layerwise import per_layer_sqnr

    q16, _ = pair
    worst = per_layer_sqnr(fp32, q16, calib[:2])
    assert worst and all(np.isfinite(v) and v > 10 for _, v in worst)
