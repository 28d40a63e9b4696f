"""No bad input gets past a clear error: ``python -m swin_edge`` answers each one with exit code
2 and one stderr line naming the option or file, no traceback and no new files, before any
export/quantize work. Most cases fail at parse time; ONNX inputs are tiny models."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from swin_edge.cli import main
from swin_edge.commands import lint as lint_command
from swin_edge.export import torch_to_onnx
from swin_edge.export.onnx_export import CONFIG_KEY
from swin_edge.model.swin import SwinTransformer
from swin_edge.utils import atomic_path

from .conftest import TINY


def _qdq_on_input(src: Path, dst: Path) -> None:
    """``src`` with a QuantizeLinear/DequantizeLinear pair on its input (metadata kept)."""
    model = onnx.load(str(src))
    inp = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["dq" if i == inp else i for i in node.input]
    model.graph.initializer.extend(
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ]
    )
    qdq = [
        helper.make_node("QuantizeLinear", [inp, "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
    ]
    nodes = [*qdq, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))


def _not_an_image_model(dst: Path) -> None:
    """A (1, 10) -> (1, 10) model that carries a swin_edge config, so only its rank is wrong."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["logits"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {CONFIG_KEY: json.dumps(TINY.to_dict())})
    onnx.save(model, str(dst))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Tiny inputs shared by every case (the snapshot checks nothing is written beside them)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    fp32 = torch_to_onnx(SwinTransformer(TINY).eval(), d / "fp32.onnx", verify=False).path
    five = dataclasses.replace(TINY, num_classes=5)
    torch_to_onnx(SwinTransformer(five).eval(), d / "fp32_5.onnx", verify=False)
    _qdq_on_input(fp32, d / "qdq.onnx")
    _not_an_image_model(d / "rank2.onnx")
    torch.save({"layers.0.blocks.0.norm1.weight": torch.tensor([1.0, float("nan")])}, d / "nan.pth")
    (d / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (72, 80, 3), np.uint8)).save(d / f"images/{i}.png")
    return {"models": str(d), **{p.stem: str(p) for p in d.iterdir()}}


@pytest.fixture
def work(tmp_path, models) -> dict[str, str]:
    """Placeholders for one case: its folder, a folder, a file, a read-only folder, inputs."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    zero = {"ratio": 0.0, "rounds": None, "environment": {}, "note": ""}
    (tmp_path / "zero.json").write_text(
        json.dumps({"numerator": "int8", "denominator": "fp32", "classes": {"amd-avx2": zero}})
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root ignores modes; /proc/sys is read-only for root too
        ro = Path("/proc/sys")
    yield {
        "tmp": str(tmp_path),
        "dir": str(tmp_path / "adir"),
        "file": str(tmp_path / "afile"),
        "zero_baseline": str(tmp_path / "zero.json"),
        "ro": str(ro) if not os.access(ro, os.W_OK) else "",
        **models,
    }
    (tmp_path / "ro").chmod(0o755)


def snapshot(*folders: str) -> set[str]:
    return {str(p) for f in folders for p in Path(f).rglob("*")}


def run_cli(args: list[str], cwd: str, env: dict[str, str] | None = None):
    env = {**os.environ, "SWIN_EDGE_CACHE": str(Path(cwd) / "cache"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "swin_edge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


# (id, arguments, what the one line must name). Placeholders: see the `work` fixture.
TABLE = [
    # unbounded resources
    ("threads", ["compare", "{fp32}", "--threads", "100000"], "--threads"),
    ("build-threads", ["build", "--threads", "100000"], "--threads"),
    ("bench-threads-negative", ["bench", "--threads", "-1"], "--threads"),
    ("batch", ["export", "--batch", "100000"], "--batch"),
    ("build-batch", ["build", "--batch", "100000"], "--batch"),
    ("build-sqnr-drop", ["build", "--max-sqnr-drop", "-3"], "--max-sqnr-drop"),
    ("img-size", ["export", "--img-size", "100000"], "--img-size"),
    ("num-images-0", ["quantize", "{fp32}", "--num-images", "0"], "--num-images"),
    ("num-calib-0", ["build", "--num-calib", "0"], "--num-calib"),
    ("num-eval-negative", ["build", "--num-eval", "-3"], "--num-eval"),
    ("rounds-0", ["bench", "--rounds", "0"], "--rounds"),
    ("rounds-huge", ["bench", "--rounds", "10000000"], "--rounds"),
    ("iterations-huge", ["compare", "{fp32}", "--iterations", "1000000000"], "--iterations"),
    ("warmup-negative", ["build", "--warmup", "-1"], "--warmup"),
    ("max-batch-huge", ["engine", "{fp32}", "--max-batch", "100000"], "--max-batch"),
    ("workspace-0", ["deploy", "--workspace", "0"], "--workspace"),
    # numbers
    ("window-0", ["export", "--window-size", "0"], "--window-size"),
    ("window-negative", ["build", "--window-size", "-1"], "--window-size"),
    ("num-classes-negative", ["export", "--num-classes", "-5"], "--num-classes"),
    ("num-classes-0-classifier", ["build", "--num-classes", "0"], "--num-classes"),
    ("iterations-0", ["compare", "{fp32}", "--iterations", "0"], "--iterations"),
    ("opset-99", ["export", "--opset", "99"], "--opset"),
    ("opset-17", ["export", "--opset", "17"], "--opset"),
    ("dla-negative", ["engine", "{fp32}", "--dla", "-1"], "--dla"),
    ("opt-level", ["build", "--opt-level", "6"], "--opt-level"),
    ("percentile", ["quantize", "{fp32}", "--percentile", "50"], "--percentile"),
    ("not-a-number", ["build", "--batch", "two"], "--batch"),
    ("unknown-option", ["export", "--bogus"], "--bogus"),
    ("no-command", [], "command"),
    # output paths
    ("out-is-folder", ["export", "--out", "{dir}"], "--out"),
    ("json-is-folder", ["compare", "{fp32}", "--json", "{dir}"], "--json"),
    ("summary-is-folder", ["bench", "--onnx", "a={fp32}", "--summary", "{dir}"], "--summary"),
    ("ort-out-is-folder", ["quantize", "{fp32}", "--ort-out", "{dir}"], "--ort-out"),
    ("baseline-out-is-folder", ["bench", "--write-baseline", "{dir}"], "--write-baseline"),
    ("out-empty", ["export", "--out", ""], "--out"),
    ("file-in-the-way", ["export", "--out", "{file}/sub/m.onnx"], "--out"),
    ("read-only-out", ["quantize", "{fp32}", "--out", "{ro}/m.onnx"], "--out"),
    ("read-only-run-folder", ["build", "--out", "{ro}/run"], "--out"),
    ("run-folder-is-file", ["build", "--out", "{file}"], "--out"),
    ("report-out-is-file", ["report", "{file}", "--out", "{file}"], "--out"),
    ("out-is-input", ["quantize", "{fp32}", "--out", "{fp32}"], "--out"),
    (
        "out-is-input-spelled-otherwise",
        ["quantize", "{fp32}", "--out", "{models}/./fp32.onnx"],
        "--out",
    ),
    ("ort-out-is-input", ["quantize", "{fp32}", "--ort-out", "{fp32}"], "--ort-out"),
    ("engine-out-is-input", ["engine", "{fp32}", "--out", "{fp32}"], "--out"),
    ("deploy-extension", ["deploy", "--out", "{tmp}/bundle.zip"], "--out"),
    ("deploy-max-batch-0", ["deploy", "--max-batch", "0"], "--max-batch"),
    # input paths
    ("calib-dir-empty", ["quantize", "{fp32}", "--calib-dir", ""], "--calib-dir"),
    ("eval-dir-empty", ["build", "--eval-dir", ""], "--eval-dir"),
    ("eval-dir-missing", ["compare", "{fp32}", "--eval-dir", "{tmp}/nope"], "nope"),
    ("calib-dir-is-file", ["build", "--calib-dir", "{file}"], "--calib-dir"),
    ("input-missing", ["quantize", "{tmp}/none.onnx"], "none.onnx"),
    ("input-is-folder", ["lint", "{dir}"], "argument onnx"),
    ("checkpoint-is-folder", ["export", "--checkpoint", "{dir}"], "--checkpoint"),
    ("checkpoint-missing", ["build", "--checkpoint", "{tmp}/w.pth"], "w.pth"),
    ("second-model-missing", ["compare", "{fp32}", "{tmp}/missing.onnx"], "missing.onnx"),
    ("baseline-missing", ["bench", "--baseline", "{tmp}/b.json"], "--baseline"),
    ("baseline-ratio-0", ["bench", "--baseline", "{zero_baseline}"], "needs a ratio > 0"),
    ("report-missing", ["report", "{tmp}/report.json"], "report.json"),
    ("bench-onnx-not-name-path", ["bench", "--onnx", "nope"], "--onnx"),
    ("max-regression", ["bench", "--max-regression", "20x"], "--max-regression"),
    # combinations
    ("build-dla-int8", ["build", "--dla", "0"], "--dla"),
    ("deploy-dla-fp32", ["deploy", "--precision", "fp32", "--dla", "0"], "--dla"),
    ("deploy-cpu-triton", ["deploy", "--target", "cpu", "--format", "triton"], "--target"),
    ("deploy-cpu-fp16", ["deploy", "--target", "cpu", "--precision", "fp16"], "--precision"),
    ("deploy-cpu-dla", ["deploy", "--target", "cpu", "--precision", "fp32", "--dla", "0"], "--dla"),
    ("deploy-bf16-tensorrt", ["deploy", "--precision", "bf16"], "--precision"),
    (
        "deploy-cpu-iterations",
        ["deploy", "--target", "cpu", "--rounds", "5", "--iterations", "2"],
        "--iterations",
    ),
    (
        "deploy-cpu-sqnr-drop",
        ["deploy", "--target", "cpu", "--max-sqnr-drop", "nan"],
        "--max-sqnr-drop",
    ),
    ("select-runtime-missing", ["select-runtime", "{tmp}/nope"], "nope"),
    ("select-runtime-file", ["select-runtime", "{file}"], "afile"),
    ("select-runtime-not-a-bundle", ["select-runtime", "{dir}"], "bundle.json"),
    ("select-runtime-threads", ["select-runtime", "{dir}", "--threads", "100000"], "--threads"),
    ("select-runtime-sqnr-drop", ["select-runtime", "{dir}", "--max-sqnr-drop", "x"], "sqnr"),
    (
        "select-runtime-iterations",
        ["select-runtime", "{dir}", "--rounds", "5", "--iterations", "2"],
        "--iterations",
    ),
    # refused by the library before any work (imports torch/onnx: a few seconds each)
    ("already-quantized", ["quantize", "{qdq}", "--out", "{tmp}/q.onnx"], "qdq.onnx"),
    ("quantize-not-image-model", ["quantize", "{rank2}", "--out", "{tmp}/q.onnx"], "rank2.onnx"),
    ("compare-not-image-model", ["compare", "{rank2}", "{fp32}"], "rank2.onnx"),
    ("compare-class-counts", ["compare", "{fp32}", "{fp32_5}", "--eval-dir", "{images}"], "fp32_5"),
    ("nan-checkpoint", ["export", "--checkpoint", "{nan}", "--out", "{tmp}/m.onnx"], "nan.pth"),
]


@pytest.mark.parametrize("args,needle", [c[1:] for c in TABLE], ids=[c[0] for c in TABLE])
def test_bad_input_is_one_line_exit_2_no_files(work, args, needle):
    if any("{ro}" in a for a in args) and not work["ro"]:
        pytest.skip("no read-only folder available (root, and /proc/sys is writable)")
    args = [a.format(**work) for a in args]
    before = snapshot(work["tmp"], work["models"])
    proc = run_cli(args, cwd=work["tmp"])
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    assert needle in lines[0], lines[0]
    assert snapshot(work["tmp"], work["models"]) == before


def _calibration_cache(work: dict[str, str]) -> Path:
    """The cache file `quantize --calib-dir {images} --num-images 2` reads (made in-process)."""
    from swin_edge.calibration import load_images

    cache = Path(work["tmp"]) / "cache"
    load_images(work["images"], TINY.preprocess, 2, 0, cache_dir=cache)
    (path,) = cache.glob("images-*.npz")
    return path


@pytest.mark.parametrize("kind", ["folder", "wrong-shape"])
def test_bad_calibration_cache_is_rebuilt_with_a_warning(work, kind):
    """A cache entry that cannot be used is not the user's input: it is rebuilt (or skipped)
    with a warning naming it, never a crash."""
    cache = _calibration_cache(work)
    cache.unlink()
    if kind == "folder":
        cache.mkdir()
    else:
        images = sorted(str(p) for p in Path(work["images"]).iterdir())
        np.savez(
            cache,
            images=np.zeros((2, 3, 8, 8), np.float32),
            labels=np.zeros(0, np.int64),
            has_labels=False,
            paths=np.asarray(images),
            skipped=np.zeros((0, 2), str),
        )
    out = Path(work["tmp"]) / "q.onnx"
    args = ["quantize", work["fp32"], "--calib-dir", work["images"], "--num-images", "2"]
    proc = run_cli([*args, "--out", str(out)], cwd=work["tmp"])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(cache.name in line for line in proc.stderr.splitlines()), proc.stderr
    assert out.is_file()


@pytest.mark.parametrize(
    "code,fix",
    [
        (errno.EACCES, "permissions"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "free disk space"),
        (errno.EISDIR, "folder"),
    ],
)
def test_os_errors_are_one_line_naming_the_file(tmp_path, monkeypatch, capsys, code, fix):
    def fail(args):
        raise OSError(code, os.strerror(code), str(tmp_path / "out" / "m.onnx"))

    monkeypatch.setattr(lint_command, "run", fail)
    (tmp_path / "m.onnx").write_bytes(b"")
    assert main(["lint", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "out" / "m.onnx") in err and fix in err


def test_sigterm_is_an_interrupt_temp_files_removed(tmp_path, monkeypatch, capsys):
    def killed_while_writing(args):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler interrupts this

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(lint_command, "run", killed_while_writing)
    (tmp_path / "m.onnx").write_bytes(b"")
    assert main(["lint", str(tmp_path / "m.onnx")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert signal.getsignal(signal.SIGTERM) == before
