"""CPU deploy bundle: ``deploy --target cpu`` packs every CPU candidate's model, and the bundle's
select_runtime.sh re-runs the runtime selection where it is extracted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from swin_edge import cpu_bundle, runtime_select
from swin_edge.backends.openvino import openvino_available
from swin_edge.cli import main
from swin_edge.cpu import cpu_info
from swin_edge.cpu_bundle import read_cpu_bundle, select_bundle
from swin_edge.errors import SwinEdgeError
from swin_edge.export import torch_to_onnx
from swin_edge.model.swin import SwinTransformer
from swin_edge.quantize.u8s8_safe import gemm_input_bits
from swin_edge.runtime_select import load_deployed

from .conftest import TINY

FAST = ["--rounds", "1", "--iterations", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("cpu_bundle")
    return torch_to_onnx(SwinTransformer(TINY).eval(), d / "tiny.onnx", verify=False).path


@pytest.fixture(scope="module")
def int8_tar(fp32, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "cpu.tar.gz"
    args = ["deploy", "--target", "cpu", "--onnx", str(fp32), "--num-images", "8"]
    assert main([*args, *FAST, "--out", str(out)]) == 0
    return out


def extract(tar: Path, dest: Path) -> Path:
    dest.mkdir()
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def test_int8_bundle_carries_every_candidates_model_and_a_choice(int8_tar, tmp_path):
    b = extract(int8_tar, tmp_path / "b")
    doc = json.loads((b / "bundle.json").read_text())
    assert doc["format"] == "swin_edge.cpu-bundle/1" and doc["precision"] == "int8"
    # our cpu recipe (ORT as written/lowered, OpenVINO int8), OpenVINO's own NNCF recipe, and
    # our recipe with 7-bit GEMM inputs for targets whose u8s8 kernels clamp
    assert doc["sources"] == {
        "int8": "model.int8-cpu.onnx",
        "int8-nncf": "model.int8-openvino.onnx",
        "int8-7bit": "model.int8-cpu7.onnx",
    }
    ir = {"model.int8-cpu.xml", "model.int8-cpu.bin", "model.int8-openvino.xml"}
    assert ir <= set(doc["files"]) if openvino_available() else not ir & set(doc["files"])
    assert "model.int8-cpu7.xml" not in doc["files"]  # an ONNX Runtime candidate only
    assert os.access(b / "select_runtime.sh", os.X_OK)
    bundle = read_cpu_bundle(b)  # every listed file present with its sha256
    assert set(bundle.sources) == {"int8", "int8-nncf", "int8-7bit"}
    assert gemm_input_bits(onnx.load(str(bundle.sources["int8-7bit"]))) == 7
    # the packing machine's choice, with every candidate's times and fidelity to FP32
    manifest = json.loads((b / "deploy.json").read_text())
    keys = {c["key"] for c in manifest["candidates"]}
    assert {"ort/lowered/1t", "ort/as-written/1t"} <= keys
    seven = {"ort/lowered-7bit/1t", "ort/as-written-7bit/1t"}
    assert (seven <= keys) is manifest["cpu"]["u8s8_saturates"] is (not seven.isdisjoint(keys))
    assert manifest["chosen"]["key"] in keys and manifest["previous"] is None
    timed = [c for c in manifest["candidates"] if c["median_p50_ms"] is not None]
    assert timed and all(c["fidelity"]["cosine"] > 0.9 for c in timed)
    assert not Path(manifest["chosen"]["model"]).is_absolute()  # the folder can move


def test_select_runtime_script_rechooses_on_this_box(int8_tar, tmp_path):
    b = extract(int8_tar, tmp_path / "b")
    packed = json.loads((b / "deploy.json").read_text())
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(b / "select_runtime.sh"), "--runtime", "ort", "--threads", "1", *FAST],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # the script finds its own folder
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((b / "deploy.json").read_text())
    variants = ("lowered", "as-written")
    if cpu_info().u8s8_saturates:  # and the 7-bit model, exact on the fast kernels here
        variants += ("lowered-7bit", "as-written-7bit")
    assert {c["key"] for c in manifest["candidates"]} == {f"ort/{v}/1t" for v in variants}
    assert manifest["previous"]["chosen"] == packed["chosen"]["key"]
    assert manifest["chosen"]["key"] in proc.stdout and "cosine" in proc.stdout
    # the runner deploy.json describes computes what the FP32 model does on the check images
    with np.load(b / "check.npz") as z:
        images, ref = z["input"], z["output_0"]
    with load_deployed(b) as runner:
        logits = runner.infer_all(images)
    assert runner.config.threads == 1
    assert np.mean(np.argmax(logits, 1) == np.argmax(ref, 1)) >= 0.75
    cos = np.sum(logits * ref, 1) / np.linalg.norm(logits, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.mean() > 0.95


def break_fastest(monkeypatch, corrupt):
    """Make the fastest candidate of the next selections output ``corrupt(output)``; returns
    the patched ``measure``, whose ``broken`` is that candidate's key."""
    real = runtime_select.measure

    def measure(cands, *a, **k):
        m = real(cands, *a, **k)
        fastest = min(m.timings, key=lambda key: np.median(m.timings[key]))
        m.outputs[fastest] = [corrupt(o) for o in m.outputs[fastest]]
        measure.broken = fastest
        return m

    monkeypatch.setattr(runtime_select, "measure", measure)
    return measure


def test_a_target_whose_u8s8_kernels_clamp_also_times_the_7_bit_model(int8_tar, tmp_path, avx2_cpu):
    b = extract(int8_tar, tmp_path / "b")
    sel = select_bundle(b, "ort", [1], 1, 2, 0)
    by_key = {r.candidate.key: r for r in sel.results}
    assert set(by_key) == {
        f"ort/{v}/1t" for v in ("lowered", "as-written", "lowered-7bit", "as-written-7bit")
    }
    assert Path(by_key["ort/lowered-7bit/1t"].candidate.model).name == "model.int8-cpu7.onnx"
    # each faithful to FP32 on the bundled images: the 8-bit one on the exact kernels
    assert all(r.fidelity["cosine"] > 0.9 for r in sel.results)
    manifest = json.loads((b / "deploy.json").read_text())
    assert manifest["cpu"]["u8s8_saturates"] and manifest["chosen"]["key"] == sel.chosen.key
    with load_deployed(b, warn=False) as runner:
        eight_bit = Path(sel.chosen.model).name == "model.int8-cpu.onnx"
        assert runner.exact_u8s8 is eight_bit  # the 7-bit model runs the fast kernels


def test_a_candidate_with_nonfinite_outputs_is_never_chosen(int8_tar, tmp_path, monkeypatch):
    b = extract(int8_tar, tmp_path / "b")
    measure = break_fastest(monkeypatch, lambda o: np.full_like(o, np.nan))
    sel = select_bundle(b, "ort", [1], 1, 2, 0)
    assert sel.chosen.key != measure.broken
    broken = next(r for r in sel.results if r.candidate.key == measure.broken)
    assert broken.median_ms is None and "non-finite" in broken.error


def test_an_unfaithful_candidate_is_timed_but_never_chosen(int8_tar, tmp_path, monkeypatch):
    b = extract(int8_tar, tmp_path / "b")
    rng = np.random.default_rng(0)  # the fastest candidate computes something else
    measure = break_fastest(monkeypatch, lambda o: o + rng.normal(0, 2 * o.std(), o.shape))
    sel = select_bundle(b, "ort", [1], 1, 2, 0)
    assert sel.chosen.key != measure.broken
    broken = next(r for r in sel.results if r.candidate.key == measure.broken)
    assert broken.median_ms is not None and broken.vs_chosen <= 1.0
    assert "--max-sqnr-drop 10 dB" in broken.rejected and broken.fidelity["sqnr_db"] < 10
    manifest = json.loads((b / "deploy.json").read_text())
    assert manifest["chosen"]["key"] == sel.chosen.key
    assert [c["key"] for c in manifest["candidates"] if "rejected" in c] == [measure.broken]
    # with no limit the speed alone decides
    assert select_bundle(b, "ort", [1], 1, 2, 0, max_sqnr_drop_db=1000).chosen.key == (
        measure.broken
    )


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_pinned_openvino_is_refused_when_less_faithful_than_onnxruntime(
    int8_tar, tmp_path, monkeypatch
):
    b = extract(int8_tar, tmp_path / "b")
    real = runtime_select.measure

    def measure(cands, *a, **k):  # every OpenVINO candidate computes something else
        m = real(cands, *a, **k)
        rng = np.random.default_rng(0)
        for key, outs in m.outputs.items():
            m.outputs[key] = [o + rng.normal(0, 2 * o.std(), o.shape) for o in outs]
        return m

    monkeypatch.setattr(runtime_select, "measure", measure)
    before = (b / "deploy.json").read_bytes()
    with pytest.raises(SwinEdgeError, match="below ort/as-written .*static batch"):
        select_bundle(b, "openvino", [1], 1, 2, 0)
    assert (b / "deploy.json").read_bytes() == before  # the packed choice stays


def test_an_exact_candidate_is_strict_json(fp32, tmp_path):
    # ONNX Runtime's FP32 against the ONNX Runtime FP32 reference: identical outputs
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    sel = runtime_select.select_cpu_runtime(
        "fp32", fp32, runtime="ort", threads=[1], rounds=1, iterations=1, warmup=0,
        check_images=images,
    )  # fmt: skip
    path = runtime_select.write_deploy_manifest(
        tmp_path / "deploy.json", sel, runtime_select.cpu_info(), {}
    )

    def no_constant(name):
        raise AssertionError(f"{name} in deploy.json")

    doc = json.loads(path.read_text(), parse_constant=no_constant)
    assert doc["candidates"][0]["fidelity"]["exact"] is True
    assert runtime_select.read_deploy_manifest(path).chosen == sel.chosen


def test_changed_bundle_file_is_refused_and_deploy_json_kept(int8_tar, tmp_path, capsys):
    b = extract(int8_tar, tmp_path / "b")
    before = (b / "deploy.json").read_bytes()
    with open(b / "model.int8-cpu.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    assert main(["select-runtime", str(b), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.int8-cpu.onnx" in err and "sha256" in err
    assert (b / "deploy.json").read_bytes() == before
    with pytest.raises(SwinEdgeError, match="differs from the one packed"):
        load_deployed(b)  # serving refuses a changed model too
    c = extract(int8_tar, tmp_path / "c")
    (c / "check.npz").unlink()
    with pytest.raises(SwinEdgeError, match="check.npz' is missing"):
        read_cpu_bundle(c)


def test_not_a_bundle(tmp_path):
    with pytest.raises(SwinEdgeError, match="no bundle.json"):
        read_cpu_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text('{"format": "swin_edge.bundle/1"}')  # a TensorRT one
    with pytest.raises(SwinEdgeError, match="not a swin_edge CPU bundle"):
        read_cpu_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text('{"format": "swin_edge.cpu-bundle/1", "files": 3}')
    with pytest.raises(SwinEdgeError, match="malformed"):
        read_cpu_bundle(tmp_path)


def test_a_model_the_7_bit_pass_refuses_is_bundled_with_8_bits(fp32, tmp_path, monkeypatch, capsys):
    from swin_edge.quantize import u8s8_safe

    def refuse(src, dst):
        raise SwinEdgeError("gemm_7: its input codes do not come from a QuantizeLinear")

    monkeypatch.setattr(u8s8_safe, "narrow_file", refuse)
    out = tmp_path / "int8.tar.gz"
    args = ["deploy", "--target", "cpu", "--onnx", str(fp32), "--num-images", "8"]
    assert main([*args, "--no-select", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: no 7-bit GEMM-input model in the bundle: gemm_7: its input codes" in err
    sources = read_cpu_bundle(extract(out, tmp_path / "b")).sources
    assert set(sources) == {"int8", "int8-nncf"}


def test_fp32_bundle_without_a_choice_asks_for_the_selection(fp32, tmp_path, capsys):
    out = tmp_path / "fp32.tar.gz"
    args = ["deploy", "--target", "cpu", "--precision", "fp32", "--onnx", str(fp32)]
    assert main([*args, "--no-select", "--out", str(out)]) == 0
    b = extract(out, tmp_path / "b")
    assert not (b / "deploy.json").exists()
    assert json.loads((b / "bundle.json").read_text())["sources"] == {"fp32": "model.onnx"}
    with pytest.raises(SwinEdgeError, match="select_runtime.sh"):
        load_deployed(b)
    assert main(["select-runtime", str(b), "--runtime", "ort", "--threads", "1", *FAST]) == 0
    with load_deployed(b) as runner:
        with np.load(b / "check.npz") as z:  # FP32 on ORT: the reference itself
            np.testing.assert_allclose(runner.infer_all(z["input"]), z["output_0"], atol=1e-4)


def test_bf16_packed_on_a_cpu_without_bf16_leaves_the_choice_to_the_target(
    fp32, tmp_path, monkeypatch
):
    if not openvino_available():
        pytest.skip("bf16 runs on OpenVINO, which is not installed")
    from swin_edge import cpu

    info = cpu.cpu_info()
    flags = tuple(f for f in info.flags if f not in ("avx512_bf16", "amx_bf16"))
    no_bf16 = cpu.CpuInfo(info.model, info.vendor, info.arch, flags)
    assert not no_bf16.has_bf16
    monkeypatch.setattr(runtime_select, "cpu_info", lambda: no_bf16)
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    res = cpu_bundle.make_cpu_bundle(
        tmp_path / "bf16.tar.gz",
        fp32,
        TINY.to_dict(),
        images,
        cpu_bundle.CpuBundleConfig(precision="bf16", rounds=1, iterations=1, warmup=0),
    )
    assert res.selection is None and "AVX512-BF16" in res.note
    with tarfile.open(res.path) as t:
        names = set(t.getnames())
    assert "deploy.json" not in names and {"model.onnx", "model.xml", "bundle.json"} <= names


def test_loading_on_another_cpu_class_warns_to_reselect(int8_tar, tmp_path, monkeypatch):
    from swin_edge import cpu

    b = extract(int8_tar, tmp_path / "b")
    other = cpu.CpuInfo("Some CPU", "other", "x86_64", ("avx2", "fma"))
    monkeypatch.setattr(runtime_select, "cpu_info", lambda: other)
    with pytest.warns(UserWarning, match="select_runtime.sh"):
        runner = load_deployed(b / "deploy.json")
    assert Path(runner.model_path).parent == b


BUILD_ONLY = ("torch", "nncf", "onnxscript", "onnxconverter_common", "matplotlib", "tqdm", "PIL")
SERVE_WITHOUT_BUILD_TOOLS = """
import sys
class NoBuildTools:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is a build tool, not installed on a serving box")
sys.meta_path.insert(0, NoBuildTools())
from swin_edge.cli import main
assert main(["select-runtime", {bundle!r}, "--runtime", "ort", *{fast!r}]) == 0
import numpy as np
from swin_edge.runtime_select import load_deployed
with np.load({bundle!r} + "/check.npz") as z:
    images = z["input"]
with load_deployed({bundle!r}) as runner:
    print("logits", runner.infer_all(images).shape)
"""


def test_a_serving_box_needs_no_build_tools(int8_tar, tmp_path):
    """The bundle README's lean install (swin_edge --no-deps + numpy, onnx, onnxruntime): the
    selection and the loader import none of torch, NNCF, matplotlib, Pillow."""
    b = extract(int8_tar, tmp_path / "b")
    code = SERVE_WITHOUT_BUILD_TOOLS.format(blocked=set(BUILD_ONLY), bundle=str(b), fast=FAST)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "logits (8, " in proc.stdout
    assert "--no-deps swin_edge" in (b / "README.md").read_text()
