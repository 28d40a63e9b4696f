from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from swin_edge.backends.onnxrt_u8s8 import saturating_model
from swin_edge.errors import SwinEdgeError

from .test_onnxrt_lowering import M, N, qdq_gemm


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # Q/DQ as float
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def qdq_matmul(
    weight: np.ndarray, x_shape: list[int], a_zp: int, second: str = "weight"
) -> onnx.ModelProto:
    """x -> Q(u8) -> DQ -> MatMul with DQ(int8 weight (K, N)), per-tensor scales; or, with
    ``second="activation"``, a MatMul of two u8 activations (attention's kind)."""
    k, n = weight.shape
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "a_s"),
        numpy_helper.from_array(np.array(a_zp, np.uint8), "a_zp"),
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(np.array(1.0, np.float32), "w_s"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "a_s", "a_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "a_s", "a_zp"], ["x_dq"]),
    ]
    if second == "weight":
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_s"], ["w"]))
        rhs = "w"
    else:  # x @ x^T, both uint8
        nodes.append(helper.make_node("Transpose", ["x_dq"], ["x_t"], perm=[1, 0]))
        rhs = "x_t"
    nodes.append(helper.make_node("MatMul", ["x_dq", rhs], ["y"]))
    out_cols = n if second == "weight" else x_shape[0]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*x_shape[:-1], out_cols])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def clamped_reference(x_q: np.ndarray, weight: np.ndarray, zp: int) -> np.ndarray:
    """The vpmaddubsw arithmetic in int64: neighbouring products along K summed and clamped to
    int16, an unpaired last product kept, then the zero-point correction."""
    prod = x_q.astype(np.int64)[..., :, None] * weight.astype(np.int64)
    k2 = weight.shape[0] // 2 * 2
    pairs = np.clip(prod[..., 0:k2:2, :] + prod[..., 1:k2:2, :], -32768, 32767)
    return pairs.sum(-2) + prod[..., k2:, :].sum(-2) - zp * weight.astype(np.int64).sum(0)


def test_a_pair_of_full_scale_products_is_clamped_to_int16():
    """255 * 127 + 255 * 127 = 64770 does not fit int16: the kernel keeps 32767."""
    model = qdq_matmul(np.array([[127], [127]], np.int8), [1, 2], a_zp=0)
    x = np.array([[255.0, 255.0]], np.float32)
    assert run(model, x)[0, 0] == 64770.0
    emulated, count = saturating_model(model)
    assert count == 1
    assert run(emulated, x)[0, 0] == 32767.0


@pytest.mark.parametrize("k", [6, 7])  # odd K: the last product has no partner
def test_matmul_with_batch_dims_matches_the_int_reference(k):
    rng = np.random.default_rng(k)
    weight = rng.integers(-127, 128, (k, 5)).astype(np.int8)
    codes = rng.integers(0, 256, (2, 3, k))
    x = (codes - 100).astype(np.float32)  # scale 1, zero point 100: these u8 codes exactly
    model = qdq_matmul(weight, [2, 3, k], a_zp=100)
    emulated, _ = saturating_model(model)
    want = clamped_reference(codes, weight, 100)
    got = run(emulated, x)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    exact = run(model, x)
    assert not np.array_equal(got, exact)  # random full-scale codes do clamp


@pytest.mark.parametrize("trans_b", [True, False])
def test_gemm_without_clamping_equals_the_qdq_model(trans_b):
    """Small activation codes never reach int16's limit: the rewrite (per-channel scales,
    int32 bias, either weight layout) then computes the Q/DQ Gemm itself."""
    model = qdq_gemm(trans_b, True, np.array(0, np.uint8))
    x = np.random.default_rng(1).uniform(0, 3.0, (M, 24)).astype(np.float32)  # codes <= 100
    emulated, count = saturating_model(model)
    assert count == 1
    np.testing.assert_allclose(run(emulated, x), run(model, x), rtol=1e-5, atol=1e-5)


def test_gemm_with_large_codes_differs_where_pairs_clamp():
    model = qdq_gemm(True, True, np.array(128, np.uint8))
    x = np.random.default_rng(2).uniform(0, 3.8, (M, 24)).astype(np.float32)  # codes 128-255
    emulated, _ = saturating_model(model)
    diff = np.abs(run(emulated, x) - run(model, x))
    assert 0 < (diff > 1e-3).mean() < 1  # some outputs clamp, not all
    assert run(emulated, x).shape == (M, N)


def test_activation_by_activation_matmuls_are_kept():
    """u8 x u8 products (attention) run in exact u8u8 kernels: not rewritten."""
    model = qdq_matmul(np.zeros((4, 4), np.int8), [4, 4], a_zp=0, second="activation")
    emulated, count = saturating_model(model)
    assert count == 0
    assert [n.op_type for n in emulated.graph.node] == [n.op_type for n in model.graph.node]


def test_old_opsets_are_refused():
    model = qdq_matmul(np.ones((2, 1), np.int8), [1, 2], a_zp=0)
    model.opset_import[0].version = 11
    with pytest.raises(SwinEdgeError, match="opset >= 13"):
        saturating_model(model)


def u8u8_rewrite_defined() -> bool:
    """Whether ONNX Runtime adds its Avx2WeightS8ToU8Transformer here: on x86 where its u8u8
    and u8s8 kernels differ (every AVX2 CPU, VNNI or not); on AMX that depends on its version
    (and AMX is exact anyway); elsewhere it is compiled out."""
    from swin_edge.cpu import cpu_info

    info = cpu_info()
    return info.arch in ("x86_64", "amd64") and info.int8_tier not in ("amx", "sse")


def test_exact_u8s8_rewrites_the_weights_as_uint8(tmp_path):
    """The session entry is what makes ONNX Runtime's optimized graph carry uint8 weights
    (its Avx2WeightS8ToU8Transformer), so it is applied, not only recorded."""
    if not u8u8_rewrite_defined():
        pytest.skip("ONNX Runtime's u8u8 rewrite is not defined for this CPU class")
    src = tmp_path / "m.onnx"
    onnx.save(qdq_gemm(True, True, np.array(128, np.uint8)), src)

    def weight_types(exact: bool) -> set[int]:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"opt{int(exact)}.onnx")
        if exact:
            so.add_session_config_entry("session.x64quantprecision", "1")
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
        inits = {t.name: t.data_type for t in opt.graph.initializer}
        return {inits[n.input[3]] for n in opt.graph.node if n.op_type == "QGemm"}

    assert weight_types(False) == {TensorProto.INT8}
    assert weight_types(True) == {TensorProto.UINT8}


@pytest.mark.parametrize("saturates", [True, False])
def test_the_default_follows_this_cpu_and_an_explicit_setting_wins(monkeypatch, saturates):
    from swin_edge.backends import onnxrt
    from swin_edge.quantize.u8s8_safe import GEMM_INPUT_BITS_KEY

    monkeypatch.setattr(onnxrt, "u8s8_saturates_here", lambda: saturates)
    model = qdq_gemm(True, True, np.array(128, np.uint8))
    assert onnxrt.OrtConfig().exact_u8s8_for(model) is saturates
    assert onnxrt.OrtConfig(exact_u8s8=False).exact_u8s8_for(model) is False
    assert onnxrt.OrtConfig(exact_u8s8=True).exact_u8s8_for(model) is True
    onnx.helper.set_model_props(model, {GEMM_INPUT_BITS_KEY: "7"})  # never clamps: fast kernels
    assert onnxrt.OrtConfig().exact_u8s8_for(model) is False
    assert onnxrt.OrtConfig(exact_u8s8=True).exact_u8s8_for(model) is True
    fp32 = helper.make_model(  # a float model: nothing for the entry to do
        helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "f",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
            [numpy_helper.from_array(np.ones((2, 1), np.float32), "w")],
        )
    )
    assert onnxrt.OrtConfig().exact_u8s8_for(fp32) is False


AVX2_VIEW = Path(__file__).resolve().parents[2] / "scripts" / "avx2_view.sh"
DEFAULT_KERNELS = """
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

model, x, out = sys.argv[1:]
results = {}
for exact in (False, True):
    so = ort.SessionOptions()
    if exact:
        so.add_session_config_entry("session.x64quantprecision", "1")
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    results["exact" if exact else "default"] = sess.run(None, {"x": np.load(x)})[0]
np.savez(out, **results)
"""


def test_onnx_runtime_avx2_kernels_compute_what_the_emulation_says(tmp_path):
    """Natively, where this machine can pretend to be AVX2-only (scripts/avx2_view.sh: CPUID
    faulting): ONNX Runtime's default kernels then clamp exactly as ``saturating_model`` does,
    and ``session.x64quantprecision`` gives the Q/DQ arithmetic back."""
    import shutil
    import subprocess
    import sys

    if shutil.which("cc") is None or "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        pytest.skip("needs a C compiler and CPUID faulting (cpuid_fault) to view the CPU as AVX2")
    probe = [str(AVX2_VIEW), sys.executable, "-c", "pass"]
    started = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    if started.returncode != 0:  # e.g. a sandbox that refuses arch_prctl(ARCH_SET_CPUID)
        pytest.skip(f"avx2_view.sh cannot start here: {started.stderr.strip()[-200:]}")
    model = qdq_gemm(True, True, np.array(128, np.uint8))
    x = np.random.default_rng(2).uniform(0, 3.8, (M, 24)).astype(np.float32)  # codes 128-255
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "run.py").write_text(DEFAULT_KERNELS)
    args = [str(tmp_path / p) for p in ("run.py", "m.onnx", "x.npy", "out.npz")]
    proc = subprocess.run(
        [str(AVX2_VIEW), sys.executable, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    native = np.load(tmp_path / "out.npz")
    emulated = run(saturating_model(model)[0], x)
    qdq = run(model, x)
    assert np.abs(emulated - qdq).max() > 1.0  # this input clamps
    np.testing.assert_allclose(native["default"], emulated, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(native["exact"], qdq, rtol=1e-5, atol=1e-4)
    # swin_edge's own detection in the view sees the same CPU kind as the kernels
    probe = "from swin_edge.cpu import cpu_info; print(cpu_info().cpu_class)"
    seen = subprocess.run(
        [str(AVX2_VIEW), sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert seen.returncode == 0 and seen.stdout.strip().endswith("-avx2"), seen.stderr[-500:]


def shared_weight_conv_model() -> onnx.ModelProto:
    """An image model whose one int8 conv weight serves two Convs (a layer applied twice, like
    CBAM's channel MLP), int8 activations as the tensorrt recipe writes them."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(-127, 128, (3, 3, 1, 1)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(3, 0.01, np.float32), "w_s"),
        numpy_helper.from_array(np.zeros(3, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.05, np.float32), "a_s"),
        numpy_helper.from_array(np.array(0, np.int8), "a_zp"),
    ]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=0)]
    x = "input"
    for i in range(2):
        nodes += [
            helper.make_node("QuantizeLinear", [x, "a_s", "a_zp"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", "a_s", "a_zp"], [f"dq{i}"]),
            helper.make_node("Conv", [f"dq{i}", "w"], [f"c{i}"], name=f"conv{i}"),
        ]
        x = f"c{i}"
    nodes.append(helper.make_node("Flatten", [x], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 192])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_exact_u8s8_loads_models_that_share_a_quantized_weight(tmp_path):
    """ONNX Runtime's u8u8 rewrite fails on a weight two nodes share ("Attempt to replace the
    existing tensor"); the runner gives each its own copy, and computes what this CPU's own
    choice computes (exact kernels already, or the exact setting itself)."""
    from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
    from swin_edge.backends.onnxrt_u8s8 import private_weight_dqs

    model = shared_weight_conv_model()
    path = tmp_path / "shared.onnx"
    onnx.save(model, path)
    if u8u8_rewrite_defined():  # where ONNX Runtime has the rewrite: its bug, shown
        so = ort.SessionOptions()
        so.add_session_config_entry("session.x64quantprecision", "1")
        with pytest.raises(Exception, match="replace the existing tensor"):
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    outs = []
    for exact in (True, None):  # None: this CPU's choice (exact where u8s8 kernels clamp)
        with OnnxrtRunner(path, OrtConfig(exact_u8s8=exact)) as r:
            outs.append(r.infer(x))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert private_weight_dqs(model) == 1
    assert private_weight_dqs(model) == 0  # nothing shared any more
