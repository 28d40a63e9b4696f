import json
import os
import signal
import subprocess
import sys
import time

import pytest

from swin_edge import pipeline
from swin_edge.errors import SwinEdgeError
from swin_edge.pipeline import BuildConfig, build
from swin_edge.run_folder import remove_debris, staged_run_folder
from swin_edge.utils import sha256_file

SMALL = dict(
    model="swin_tiny",
    img_size=64,
    window_size=2,
    num_classes=5,
    iterations=3,
    warmup=1,
    num_calib=4,
    num_eval=4,
    worst_layers=0,
    target="cpu",
)


def snapshot(folder):
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    res = build(BuildConfig(precision="int8", out=str(out), **SMALL), progress=False)
    return out, res


def test_report_records_every_artifact_with_its_sha256(first_run):
    out, res = first_run
    report = json.loads((out / "report.json").read_text())
    expected = {"onnx_fp32", "onnx_int8", "deploy_manifest"}
    assert set(report["artifacts"]) >= expected
    chosen = report["runtime_selection"]["chosen"]["variant"]
    assert ("onnx_int8_ort" in report["artifacts"]) is (chosen in ("lowered", "lowered-7bit"))
    for a in report["artifacts"].values():
        assert sha256_file(out / a["file"]) == a["sha256"]
    assert report["results"][0]["path"] == "model.onnx"
    deployed = (
        "model.int8-cpu.onnx",
        "model.int8-cpu7.onnx",  # where u8s8 kernels clamp
        "model.int8-cpu.xml",
        "model.int8-openvino.xml",
    )
    assert report["results"][1]["path"] in deployed
    assert report["results"][1]["speedup"]["rounds"] == 3  # iterations 3 -> 3 rounds of 1
    assert all(os.path.exists(p) for p in res.artifacts.values())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_failed_build_leaves_the_previous_run_untouched(first_run, monkeypatch):
    out, _ = first_run
    before = snapshot(out)

    def broken(*args, **kwargs):
        raise SwinEdgeError("calibration went wrong")

    monkeypatch.setattr("swin_edge.quantize.quantize_onnx", broken)
    with pytest.raises(SwinEdgeError, match="went wrong"):
        # other weights: a new model.onnx beside the old INT8 model would mismatch it
        build(BuildConfig(precision="int8", out=str(out), **dict(SMALL, num_classes=4)), False)
    assert snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_bad_input_is_refused_before_any_work(first_run, tmp_path, monkeypatch):
    out, _ = first_run
    before = snapshot(out)
    calls = []
    monkeypatch.setattr(pipeline, "_build_into", lambda *a: calls.append(a))
    with pytest.raises(SwinEdgeError, match="image folder .* does not exist"):
        build(BuildConfig(out=str(out), calib_dir=str(tmp_path / "nope"), **SMALL), False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(SwinEdgeError, match="holds files that build did not write .thesis.tex"):
        build(BuildConfig(out=str(tmp_path / "mine"), **SMALL), False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SwinEdgeError, match="is a file"):
        build(BuildConfig(out=str(tmp_path / "file"), **SMALL), False)
    assert calls == [] and snapshot(out) == before


def test_staging_swaps_whole_folder_and_debris_of_killed_builds_is_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.onnx").write_text("old")
    (out / "report.json").write_text("old")
    pid = dead_pid()
    (tmp_path / f".run.staging-{pid}").mkdir()  # a killed build's half-written stage
    (tmp_path / f".run.staging-{pid}" / "model.onnx").write_text("half")
    (tmp_path / f".run.staging-{os.getpid()}x").mkdir()  # not ours: left alone
    with staged_run_folder(out) as stage:
        assert not (tmp_path / f".run.staging-{pid}").exists()
        (stage / "model.onnx").write_text("new")
        assert (out / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]  # no stale report.json
    assert (out / "model.onnx").read_text() == "new"
    with pytest.raises(KeyboardInterrupt), staged_run_folder(out) as stage:
        (stage / "model.onnx").write_text("interrupted")
        raise KeyboardInterrupt
    assert (out / "model.onnx").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".run.staging-{os.getpid()}x", "run"]


def test_a_build_killed_mid_swap_gets_its_old_run_back(tmp_path):
    out = tmp_path / "run"
    old = tmp_path / f".run.old-{dead_pid()}"
    old.mkdir()
    (old / "model.onnx").write_text("previous")
    assert remove_debris(out) == 1
    assert (out / "model.onnx").read_text() == "previous"


def test_sigterm_during_build_exits_130_and_keeps_the_previous_run(first_run, tmp_path):
    out, _ = first_run
    before = snapshot(out)
    args = [sys.executable, "-m", "swin_edge", "build", "--out", str(out), "--no-progress"]
    args += ["--target", "cpu", "--img-size", "64", "--window-size", "2", "--num-classes", "5"]
    args += ["--num-calib", "4", "--num-eval", "4", "--iterations", "400"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    stage = out.parent / f".run.staging-{proc.pid}"
    deadline = time.time() + 120
    while not (stage / "model.onnx").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (stage / "model.onnx").exists(), "the build never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert snapshot(out) == before
    assert not stage.exists()
