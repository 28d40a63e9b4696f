import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.backends.onnxrt_lowering import lower_file, lower_int8_gemms
from swin_edge.calibration import load_images
from swin_edge.export import torch_to_onnx
from swin_edge.metrics import fidelity
from swin_edge.model import SwinTransformer
from swin_edge.quantize import QuantRecipe, quantize_onnx

from ..conftest import TINY

M, K, N = 50, 24, 40


def qdq_gemm(
    trans_b: bool, bias: bool, act_zp: np.ndarray, per_channel: bool = True
) -> onnx.ModelProto:
    """x -> Q -> DQ -> Gemm(DQ(int8 W), DQ(int32 b)) -> y, as quantizers write it."""
    rng = np.random.default_rng(0)
    w_scale = (rng.random(N) * 0.01 + 0.002).astype(np.float32)
    if not per_channel:
        w_scale = np.full(N, w_scale[0], np.float32)  # the bias scale stays a vector
    weight = rng.integers(-127, 128, (N, K) if trans_b else (K, N)).astype(np.int8)
    a_scale = np.array(0.03, np.float32)
    inits = [
        numpy_helper.from_array(a_scale, "a_s"),
        numpy_helper.from_array(act_zp, "a_zp"),
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(w_scale if per_channel else w_scale[0], "w_s"),
        numpy_helper.from_array(np.zeros(N if per_channel else (), np.int8), "w_zp"),
        numpy_helper.from_array(rng.integers(-3000, 3000, N).astype(np.int32), "b_q"),
        numpy_helper.from_array(a_scale * w_scale, "b_s"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "a_s", "a_zp"], ["x_dq"]),
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=0 if trans_b else 1
        ),
        helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], axis=0),
        helper.make_node(
            "Gemm", ["x_dq", "w", "b" if bias else ""], ["y"], name="fc", transB=int(trans_b)
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("trans_b", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_lowered_gemm_equals_qdq_gemm(trans_b, bias, per_channel):
    model = qdq_gemm(trans_b, bias, np.array(128, np.uint8), per_channel)
    x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
    ref = run(model, x)
    assert lower_int8_gemms(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["QuantizeLinear", "MatMulIntegerToFloat"]  # weight/bias DQ and Gemm gone
    assert {t.name for t in model.graph.initializer} >= {"a_s", "a_zp"}
    assert "w_q" not in {t.name for t in model.graph.initializer}
    out = run(model, x)
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()


def test_int8_activations_are_left_alone():
    model = qdq_gemm(True, True, np.array(0, np.int8))  # the TensorRT recipe's grid
    before = model.SerializeToString()
    assert lower_int8_gemms(model) == 0
    assert model.SerializeToString() == before


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("lower")
    model = SwinTransformer(TINY).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    fp32 = torch_to_onnx(model, d / "fp32.onnx").path
    images = load_images(None, TINY.preprocess, use_cache=False).images
    int8 = quantize_onnx(fp32, d / "int8.onnx", images, QuantRecipe(target="cpu")).path
    return fp32, int8, images[:6]


def test_runner_lowers_cpu_recipe_and_keeps_its_accuracy(tiny_models, tmp_path):
    fp32, int8, x = tiny_models
    gemms = sum(n.op_type == "Gemm" for n in onnx.load(str(int8)).graph.node)
    with OnnxrtRunner(int8, OrtConfig(threads=1)) as lowered:
        y_low = lowered.infer_all(x)
    with OnnxrtRunner(int8, OrtConfig(threads=1, lower_int8=False)) as plain:
        y_qdq = plain.infer_all(x)
    with OnnxrtRunner(fp32, OrtConfig(threads=1)) as ref:
        y_ref = ref.infer_all(x)
        assert ref.lowered_gemms == 0
    assert gemms > 0 and lowered.lowered_gemms == gemms and plain.lowered_gemms == 0
    # Same arithmetic up to float rounding: rare one-step rounding flips of later activations
    # are all that separates the two, far below the quantization error itself.
    assert fidelity(y_qdq, y_low).sqnr_db > 60
    assert abs(fidelity(y_ref, y_low).sqnr_db - fidelity(y_ref, y_qdq).sqnr_db) < 1.0
    out = tmp_path / "int8.ort.onnx"
    assert lower_file(int8, out) == gemms
    so = ort.SessionOptions()  # plain ONNX Runtime with the runner's kernel choice (exact
    if lowered.exact_u8s8:  # u8u8 on CPUs whose u8s8 kernels clamp)
        so.add_session_config_entry("session.x64quantprecision", "1")
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Gemm" not in ops and "MatMulIntegerToFloat" in ops
    y_file = np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    assert np.allclose(y_file, y_low, atol=1e-5)


@pytest.mark.parametrize("lower", [True, False])
def test_exact_u8s8_gives_the_default_kernels_outputs_bit_for_bit(tiny_models, lower):
    """ONNX Runtime's exact u8u8 rewrite (``exact_u8s8``) computes the same integer products as
    the default kernels where those are exact (VNNI/AMX); where they saturate (AVX2, AVX-512
    without VNNI) the default is the exact setting itself. Either way: identical outputs."""
    from swin_edge.cpu import cpu_info

    _, int8, x = tiny_models
    with OnnxrtRunner(int8, OrtConfig(threads=1, lower_int8=lower, exact_u8s8=True)) as r:
        forced = r.infer_all(x)
        assert r.runtime_info()["exact_u8s8"] is True
    with OnnxrtRunner(int8, OrtConfig(threads=1, lower_int8=lower)) as r:
        auto = r.infer_all(x)
        assert r.runtime_info()["exact_u8s8"] is cpu_info().u8s8_saturates
    np.testing.assert_array_equal(forced, auto)


def test_models_with_subgraphs_are_left_alone():
    model = qdq_gemm(True, True, np.array(128, np.uint8))
    branch = helper.make_graph(
        [helper.make_node("Identity", ["a_s"], ["out"])],
        "branch",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [])],
    )
    cond = numpy_helper.from_array(np.array(True), "cond")
    model.graph.initializer.append(cond)
    model.graph.node.append(
        helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch)
    )
    assert lower_int8_gemms(model) == 0
    assert [n.op_type for n in model.graph.node].count("Gemm") == 1
