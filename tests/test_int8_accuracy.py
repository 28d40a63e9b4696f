"""INT8 accuracy on real data: a small Swin trained on scikit-learn digits (held-out split)."""

import numpy as np
import pytest
import torch

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.digits import DIGITS_CONFIG, load_digits_split
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.metrics import accuracy, fidelity
from swin_edge.model import SwinTransformer, load_into
from swin_edge.model.checkpoint import load_checkpoint
from swin_edge.quantize import QuantRecipe, quantize_onnx

from .conftest import FIXTURES

NUM_CALIB = 300


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    xtr, ytr, xte, yte = load_digits_split()
    state, fmt = load_checkpoint(FIXTURES / "digits_swin.pth")
    model = SwinTransformer(DIGITS_CONFIG).eval()
    load_into(model, state, fmt=fmt)
    path = tmp_path_factory.mktemp("digits") / "fp32.onnx"
    torch_to_onnx(model, path, ExportConfig(dynamic_batch=True))
    with OnnxrtRunner(path) as r:
        fp32_logits = r.infer_all(xte, batch_size=64)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(xte)).numpy()
    assert (fp32_logits.argmax(1) == torch_logits.argmax(1)).all()
    return dict(path=path, calib=xtr[:NUM_CALIB], x=xte, y=yte, fp32=fp32_logits)


@pytest.mark.parametrize("engine", ["ort", "nncf"])
@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_int8_top1_within_one_point_of_fp32(digits, tmp_path, target, engine):
    fp32_acc = accuracy(digits["fp32"], digits["y"])
    assert fp32_acc.top1 > 0.95 and fp32_acc.count == len(digits["y"])  # the weights are real
    out = tmp_path / f"int8-{target}-{engine}.onnx"
    res = quantize_onnx(
        digits["path"], out, digits["calib"], QuantRecipe(target=target, engine=engine)
    )
    assert res.num_calibration == NUM_CALIB
    with OnnxrtRunner(out) as r:
        logits = r.infer_all(digits["x"], batch_size=64)
    int8_acc = accuracy(logits, digits["y"])
    assert abs(int8_acc.top1 - fp32_acc.top1) <= 0.01, (fp32_acc, int8_acc)
    fid = fidelity(digits["fp32"], logits)
    assert fid.top1_agreement >= 0.98 and fid.cosine > 0.99
    assert not np.allclose(logits, digits["fp32"])  # it really is a different (int8) model


def test_fast_u8s8_kernels_of_x86_without_vnni_would_lose_fidelity(digits, tmp_path):
    """Why ONNX Runtime runs its exact kernels on x86 CPUs without VNNI (``OrtConfig``'s
    ``exact_u8s8``): emulating their int16 pair saturation on the trained model costs far more
    SQNR than the quantization itself, while the exact run keeps it."""
    from swin_edge.backends.onnxrt_u8s8 import saturating_file

    out = tmp_path / "int8-cpu.onnx"
    quantize_onnx(digits["path"], out, digits["calib"], QuantRecipe(target="cpu"))
    sat = tmp_path / "int8-cpu.saturating.onnx"
    assert saturating_file(out, sat) == 18  # every linear layer: qkv, proj, fc1, fc2, merge, head
    x, ref = digits["x"][:128], digits["fp32"][:128]
    with OnnxrtRunner(out, OrtConfig(lower_int8=False)) as r:
        exact = fidelity(ref, r.infer_all(x, batch_size=64)).sqnr_db
    with OnnxrtRunner(sat, OrtConfig(lower_int8=False)) as r:
        clamped = fidelity(ref, r.infer_all(x, batch_size=64)).sqnr_db
    assert exact > 30 and clamped < exact - 6, (exact, clamped)


def test_seven_bit_gemm_inputs_never_clamp_and_stay_accurate(digits, tmp_path):
    """``--gemm-input-bits 7``: the fast u8s8 kernels of x86 CPUs without VNNI clamp nothing on
    this model (the emulated clamp changes no output), the runner leaves ONNX Runtime's fast
    kernels on there, and top-1 stays within a point of FP32 at a few dB of SQNR."""
    import onnx

    from swin_edge.backends import onnxrt
    from swin_edge.backends.onnxrt_u8s8 import saturating_model
    from swin_edge.quantize.u8s8_safe import gemm_input_bits

    out = tmp_path / "int8-cpu7.onnx"
    recipe = QuantRecipe(target="cpu", gemm_input_bits=7)
    quantize_onnx(digits["path"], out, digits["calib"], recipe)
    model = onnx.load(str(out))
    assert gemm_input_bits(model) == 7
    assert onnxrt.OrtConfig().exact_u8s8_for(model) is False  # on any CPU: nothing to fix
    x, ref = digits["x"], digits["fp32"]
    with OnnxrtRunner(out, OrtConfig(lower_int8=False)) as r:
        logits = r.infer_all(x, batch_size=64)
    assert abs(accuracy(logits, digits["y"]).top1 - accuracy(ref, digits["y"]).top1) <= 0.01
    assert fidelity(ref, logits).sqnr_db > 30
    assert saturating_model(model)[1] == 18

    def emulated(m, clamp: bool) -> np.ndarray:  # the fast kernels' arithmetic, or unclamped
        path = tmp_path / f"emulated-{id(m)}-{clamp}.onnx"
        onnx.save(saturating_model(m, clamp)[0], path)
        with OnnxrtRunner(path, OrtConfig(lower_int8=False)) as r:
            return r.infer_all(x[:128], batch_size=64)

    np.testing.assert_array_equal(emulated(model, True), emulated(model, False))
    # the 8-bit grid of the same model does clamp (the test above measures how much)
    eight = tmp_path / "int8-cpu.onnx"
    quantize_onnx(digits["path"], eight, digits["calib"], QuantRecipe(target="cpu"))
    m8 = onnx.load(str(eight))
    assert not np.array_equal(emulated(m8, True), emulated(m8, False))


def test_seven_bit_gemm_inputs_are_a_cpu_recipe_option():
    from swin_edge.errors import SwinEdgeError

    with pytest.raises(SwinEdgeError, match="--gemm-input-bits 7 is for --target cpu"):
        QuantRecipe(target="tensorrt", gemm_input_bits=7)
    with pytest.raises(SwinEdgeError, match="choose 8 or 7"):
        QuantRecipe(gemm_input_bits=6)
