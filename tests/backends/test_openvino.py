import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.cpu import CpuInfo, cpu_info
from swin_edge.digits import DIGITS_CONFIG
from swin_edge.errors import SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.metrics import fidelity
from swin_edge.model import SwinTransformer
from swin_edge.quantize import QuantRecipe, quantize_onnx
from swin_edge.runtime_select import unfaithful

from ..conftest import TINY

pytest.importorskip("openvino")

from swin_edge.backends import openvino as ovb  # noqa: E402
from swin_edge.backends.openvino import (  # noqa: E402
    OpenvinoRunner,
    OvConfig,
    onnx_to_openvino_ir,
)

# The cpu recipe as these tests compare the runtimes on it: where this CPU's u8s8 kernels clamp
# (x86 without VNNI), OpenVINO's do too while ONNX Runtime runs exact ones, so the GEMM inputs go
# on 7 bits there and both runtimes compute the same exact arithmetic on every CPU kind.
CPU_RECIPE = QuantRecipe(target="cpu", gemm_input_bits=7 if cpu_info().u8s8_saturates else 8)


def tiny_model(norm_weights: bool = False, cfg=TINY) -> SwinTransformer:
    """A small Swin (TINY) with non-zero biases and, with ``norm_weights``, LayerNorm weights
    that are not 1 (as trained ones), seeded."""
    torch.manual_seed(0)
    model = SwinTransformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
            elif norm_weights and "norm" in name:
                p.uniform_(0.6, 0.9)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """TINY Swin as static FP32, dynamic-batch FP32 and cpu-recipe Q/DQ INT8 ONNX."""
    d = tmp_path_factory.mktemp("ov")
    model = tiny_model()
    fp32 = torch_to_onnx(model, d / "fp32.onnx").path
    dyn = torch_to_onnx(model, d / "dyn.onnx", ExportConfig(dynamic_batch=True)).path
    images = np.random.default_rng(0).standard_normal((8, 3, 64, 64), dtype=np.float32)
    int8 = quantize_onnx(fp32, d / "int8.onnx", images, CPU_RECIPE).path
    return {"fp32": fp32, "dyn": dyn, "int8": int8, "x": images[:5]}


def run_ort(path, x, **kw):
    with OnnxrtRunner(path, OrtConfig(threads=1, **kw)) as r:
        return r.infer_all(x, batch_size=2)


@pytest.mark.parametrize("which", ["fp32", "dyn"])
def test_fp32_matches_onnx_runtime(models, which):
    x = models["x"]
    with OpenvinoRunner(models[which], OvConfig(threads=1)) as r:
        out = r.infer_all(x, batch_size=2)  # static batch 1: fed in its own chunks
        info = r.runtime_info()
    ref = run_ort(models[which], x)
    assert out.shape == ref.shape == (5, TINY.num_classes)
    assert np.abs(out - ref).max() < 1e-4
    # f32 is asked for explicitly: OpenVINO would pick bf16 by itself on AMX/AVX512-BF16 CPUs
    assert info["precision_hint"] == "f32" and info["execution_precision"] == "f32"
    assert info["threads"] == info["threads_used"] == 1 and info["int8_layers"] == 0


def test_int8_qdq_runs_as_int8_and_agrees_with_onnx_runtime(models):
    x = models["x"]
    with OpenvinoRunner(models["int8"], OvConfig(threads=1)) as r:
        out = r.infer_all(x)
        info = r.runtime_info()
    assert info["int8_layers"] > 0  # the Q/DQ Gemms execute as u8/i8 layers
    for lower in (True, False):
        f = fidelity(run_ort(models["int8"], x, lower_int8=lower), out)
        assert f.cosine > 0.99 and f.top1_agreement == 1.0
    assert fidelity(run_ort(models["fp32"], x), out).cosine > 0.99


@pytest.mark.parametrize("cfg", [TINY, DIGITS_CONFIG], ids=["tiny", "digits"])
def test_dynamic_batch_int8_is_as_faithful_in_openvino_as_in_onnx_runtime(tmp_path, cfg):
    # OpenVINO 2026.4 lost 15-30 dB on the int8 model of a dynamic-batch export (LayerNorm
    # weights that are not 1, as trained ones, needed) until the model reordered tokens before
    # patch_embed.norm (tiny fails without it) and a dynamic-batch export normed (B, L, C)
    # before pooling (digits fails without it)
    dyn = torch_to_onnx(
        tiny_model(norm_weights=True, cfg=cfg),
        tmp_path / "dyn.onnx",
        ExportConfig(dynamic_batch=True),
    ).path
    size = cfg.img_size
    images = np.random.default_rng(1).standard_normal((16, 3, size, size), dtype=np.float32)
    int8 = quantize_onnx(dyn, tmp_path / "d8.onnx", images, CPU_RECIPE).path
    x = images[:8]
    ref = run_ort(dyn, x)
    with OpenvinoRunner(int8, OvConfig(threads=1)) as r:
        ov = fidelity(ref, r.infer_all(x, batch_size=4)).to_dict()
    ort = fidelity(ref, run_ort(int8, x)).to_dict()
    # the selection's own rule (10 dB), not a tighter margin: int8 kernels differ per CPU kind
    assert ort["sqnr_db"] > 25 and unfaithful({"ov": ov, "ort": ort}) == {}, (ov, ort)


def test_openvino_own_recipe_of_a_static_export_stays_faithful(tmp_path):
    # the classifier norm's 3-D layout, right for a dynamic batch, made OpenVINO run NNCF's own
    # recipe of a static export 20 dB worse; static exports keep the (B * L, C) layout
    from swin_edge.quantize.nncf_engine import onnx_to_int8_openvino

    fp32 = torch_to_onnx(tiny_model(norm_weights=True), tmp_path / "fp32.onnx").path
    images = np.random.default_rng(1).standard_normal((16, 3, 64, 64), dtype=np.float32)
    own = onnx_to_int8_openvino(fp32, tmp_path / "own.onnx", images)
    # both with 8-bit GEMM inputs, which OpenVINO's kernels clamp alike on CPUs without VNNI
    ours = quantize_onnx(fp32, tmp_path / "ours.onnx", images, QuantRecipe(target="cpu")).path
    x = images[:8]
    ref = run_ort(fp32, x)
    with OpenvinoRunner(own, OvConfig(threads=1)) as r:
        own_fid = fidelity(ref, r.infer_all(x)).to_dict()
    with OpenvinoRunner(ours, OvConfig(threads=1)) as r:
        ours_fid = fidelity(ref, r.infer_all(x)).to_dict()
    assert unfaithful({"own": own_fid, "ours": ours_fid}) == {}, (own_fid, ours_fid)


def test_per_layer_sqnr_in_openvino_follows_onnx_runtime(models):
    from swin_edge.layerwise import per_layer_sqnr

    x = models["x"][:2]
    ort = dict(per_layer_sqnr(models["fp32"], models["int8"], x, threads=1))
    ov = dict(per_layer_sqnr(models["fp32"], models["int8"], x, threads=1, runtime="openvino"))
    assert set(ov) == set(ort) and len(ov) > 10  # every GEMM, read from OpenVINO's own run
    # the same quantization grid: the same error, up to each runtime's arithmetic (a float
    # layer is exact in ORT, inf dB, and within float rounding in OpenVINO)
    assert not np.isnan(list(ov.values())).any()
    assert all(abs(v - ort[k]) < 3.0 or min(v, ort[k]) > 80 for k, v in ov.items())
    assert min(ov.values()) < 60  # the int8 layers are measured, not only float ones
    with pytest.raises(SwinEdgeError, match="ort or openvino"):
        per_layer_sqnr(models["fp32"], models["int8"], x, runtime="tensorrt")


def test_ir_round_trip(models, tmp_path):
    xml = onnx_to_openvino_ir(models["int8"], tmp_path / "ir" / "model.xml")
    assert xml == tmp_path / "ir" / "model.xml"
    assert sorted(p.name for p in xml.parent.iterdir()) == ["model.bin", "model.xml"]
    x = models["x"]
    with OpenvinoRunner(xml, OvConfig(threads=1)) as r_ir:
        y_ir = r_ir.infer_all(x)
        assert r_ir.runtime_info()["int8_layers"] > 0
    with OpenvinoRunner(models["int8"], OvConfig(threads=1)) as r_onnx:
        y_onnx = r_onnx.infer_all(x)
    assert np.abs(y_ir - y_onnx).max() < 1e-5
    # FP32 weights stay FP32 (compress_to_fp16=False): the IR is exact
    xml32 = onnx_to_openvino_ir(models["fp32"], tmp_path / "fp32.xml")
    with OpenvinoRunner(xml32, OvConfig(threads=1)) as r:
        assert np.abs(r.infer_all(x) - run_ort(models["fp32"], x)).max() < 1e-4


def test_ir_conversion_failures_leave_nothing(models, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SwinEdgeError, match="must end in .xml"):
        onnx_to_openvino_ir(models["fp32"], out / "model.bin")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(SwinEdgeError, match="bad.onnx' is not a readable ONNX model"):
        onnx_to_openvino_ir(bad, out / "model.xml")
    assert not out.exists() or not any(out.iterdir())


def test_bf16_refused_without_hardware_bf16(models, monkeypatch):
    no_bf16 = CpuInfo("AMD EPYC", "amd", "x86_64", ("avx2", "fma"))
    monkeypatch.setattr(ovb, "cpu_info", lambda: no_bf16)
    with pytest.raises(SwinEdgeError, match="bf16 needs a CPU with AMX-BF16 or AVX512-BF16") as e:
        OpenvinoRunner(models["fp32"], OvConfig(precision="bf16")).activate()
    assert "fp32.onnx" in str(e.value) and "amd-avx2" in str(e.value)
    with OpenvinoRunner(models["fp32"], OvConfig(threads=1)) as r:  # f32 is unaffected
        assert r.infer(models["x"][:1]).shape == (1, TINY.num_classes)


@pytest.mark.skipif(not cpu_info().has_bf16, reason="this CPU has no hardware BF16")
def test_bf16_runs_in_bf16_where_the_cpu_has_it(models):
    x = models["x"]
    with OpenvinoRunner(models["fp32"], OvConfig(threads=1, precision="bf16")) as r:
        out = r.infer_all(x)
        assert r.runtime_info()["execution_precision"] == "bf16"
    assert fidelity(run_ort(models["fp32"], x), out).cosine > 0.99


def test_config_validation():
    with pytest.raises(SwinEdgeError, match="precision 'fp16'"):
        OvConfig(precision="fp16")
    with pytest.raises(SwinEdgeError, match="--threads -1"):
        OvConfig(threads=-1)
    with pytest.raises(SwinEdgeError, match="num_streams 0"):
        OvConfig(num_streams=0)


def test_bad_inputs_are_one_line_errors(models, tmp_path):
    with pytest.raises(SwinEdgeError, match="does not exist"):
        OpenvinoRunner(tmp_path / "nope.onnx").activate()
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    with pytest.raises(SwinEdgeError, match=r"runs .onnx or OpenVINO IR .xml"):
        OpenvinoRunner(txt).activate()
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_text("<net>")
    with pytest.raises(SwinEdgeError, match="OpenVINO cannot read '.*bad.xml'") as e:
        OpenvinoRunner(bad_xml).activate()
    assert "\n" not in str(e.value)
    from ..test_onnx_check import image_model

    flat = tmp_path / "flat.onnx"
    onnx.save(image_model(in_shape=(1, 8)), str(flat))
    with pytest.raises(SwinEdgeError, match=r"flat.onnx' input 'x' is float \(1, 8\); expected"):
        OpenvinoRunner(flat).activate()


def test_benchmark_reports_ordered_percentiles(models):
    with OpenvinoRunner(models["int8"], OvConfig(threads=1)) as r:
        stats = r.benchmark(iterations=6, warmup=1)
    assert stats.batch_size == 1 and stats.iterations == 6 and stats.warmup == 1
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms


CHILD = """
import os, signal, sys, time
from swin_edge.runtime_select import CpuCandidate, measure
models = [("int8", sys.argv[1]), ("int8-nncf", sys.argv[1])]
candidates = [CpuCandidate("openvino", v, "int8", t, m) for t in (1, 2) for v, m in models]
measure(candidates, rounds=1, iterations=2, warmup=0)  # as build and select-runtime do
def handler(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, handler)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
except KeyboardInterrupt:
    print("unwound")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is Linux's")
def test_sigterm_after_openvino_unwinds_instead_of_crashing(models):
    # OpenVINO 2026.4's CPU plugin leaves the thread's alternate signal stack on memory it
    # freed once such runners are released; Python's SIGTERM handler (the CLI's clean exit)
    # then died with SIGSEGV. In a child process, so a crash cannot take pytest down.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(models["int8"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "unwound", proc.stderr[-500:]
