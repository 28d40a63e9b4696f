"""scripts/gpu_check.sh's own logic, without a GPU: arguments, trtexec lines, the summary.

The recorded folder ``tests/fixtures/gpu_check`` is synthesized from trtexec's source formats
(see the headers of its files), not recorded on a GPU.
"""

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from swin_edge.gpu_check import (
    main,
    parse_junit,
    parse_trtexec_log,
    render_summary,
    trtexec_weak_typing,
)

from .conftest import FIXTURES

REPO = Path(__file__).parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
RECORDED = FIXTURES / "gpu_check"


def sh(*args, **kw):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, **kw
    )


def test_fixture_says_it_is_synthesized():
    for path in RECORDED.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json"):
            assert "SYNTHESIZED" in path.read_text()[:400], path


def test_parse_trtexec_bench_log():
    run = parse_trtexec_log((RECORDED / "trtexec" / "int8.bench.log").read_text())
    assert run.passed and run.tensorrt == "10.3.0"
    assert run.gpu == "Orin" and run.compute_capability == "8.7"
    assert run.gpu_compute_ms["median"] == 1.5 and run.gpu_compute_ms["p99"] == pytest.approx(1.56)
    assert run.throughput_qps == pytest.approx(666.667)
    assert run.shapes is None and run.dla_layers is None  # a static engine, no DLA
    dynamic = parse_trtexec_log(
        "&&&& RUNNING TensorRT.trtexec [TensorRT v110400] # trtexec --loadEngine=e "
        "--shapes=input:4x3x224x224\n"
    )
    assert dynamic.shapes == "input:4x3x224x224" and dynamic.tensorrt == "11.4.0"
    assert not dynamic.passed


def test_parse_dla_build_log():
    run = parse_trtexec_log((RECORDED / "dla" / "build.log").read_text())
    assert (run.dla_layers, run.gpu_layers) == (2, 3)


def test_trtexec_capability_from_help_text():
    assert trtexec_weak_typing(
        "  --noTF32      Disable tf32\n  --fp16                             Enable fp16 precision"
    )
    assert not trtexec_weak_typing(
        "  --noTF32      Disable tf32\n  --stronglyTyped    [Deprecated] no-op\n"
        "  --int8                      Enable int8 precision, in addition to fp16"
    )


def test_summary_of_the_recorded_folder(tmp_path):
    md = render_summary(RECORDED)
    assert "GPU: Orin (compute capability 8.7)" in md and "TensorRT (trtexec): 10.3.0" in md
    assert "| pytest -m tensorrt: 9 ran, 0 failed, 0 skipped | PASS |" in md
    assert "| `swin_edge build --precision int8` | PASS |" in md
    assert "no FP32 layers except LayerNorm/Softmax/I-O (0 unexpected) | PASS" in md
    assert "| int8 | static (engine's own) | 1.500 | 1.560 | 666.7 | 1.33x |" in md
    assert "| trtexec build log | 2 | 3 |" in md
    assert "FAIL" not in md
    assert main(["summary", str(RECORDED), "--out", str(tmp_path / "s.md")]) == 0
    assert (tmp_path / "s.md").read_text() == md


def test_summary_flags_fp32_layers_and_failed_steps(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(RECORDED, folder)
    path = folder / "trtexec" / "int8.layers.json"
    data = json.loads(path.read_text())
    gemm = next(la for la in data["Layers"] if la["LayerType"] == "gemm")
    gemm["Inputs"][0]["Format/Datatype"] = "Float"
    path.write_text(json.dumps(data))
    with (folder / "steps.tsv").open("a") as f:
        f.write("build-int8\t1\tgpu_check/build-int8.log\n")
    md = render_summary(folder)
    assert "(1 unexpected) | FAIL" in md and f"- `{gemm['Name']}`" in md
    assert "Steps that failed: `build-int8` (exit 1)" in md


def test_summary_of_an_empty_folder(tmp_path):
    md = render_summary(tmp_path)
    assert "| pytest -m tensorrt | not run |" in md and "GPU: unknown" in md
    assert md.count("not run") >= 4
    assert parse_junit(tmp_path / "pytest.xml") is None


def test_script_arguments():
    assert sh("--help").returncode == 0 and "--dla CORE|auto|off" in sh("--help").stdout
    for bad, msg in (
        (["--bogus"], "unknown argument '--bogus'"),
        (["--dla", "x"], "--dla 'x'"),
        (["--skip", "nope"], "--skip 'nope'"),
        (["--out"], "--out needs a value"),
    ):
        proc = sh(*bad)
        assert proc.returncode == 2 and msg in proc.stderr, (bad, proc.stderr)


def test_script_dry_run_plans_every_check(tmp_path):
    proc = sh("--dry-run", "--out", str(tmp_path / "o"), "--dla", "1", "--checkpoint", "t.pth")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert "-m pytest -m tensorrt" in plan and f"--junitxml {tmp_path}/o/pytest.xml" in plan
    for p in ("fp16", "int8"):
        assert f"-m swin_edge build --precision {p} --target tensorrt" in plan
        assert f"--precision {p} --bench --layers {tmp_path}/o/trtexec/{p}.layers.json" in plan
    assert "--checkpoint t.pth" in plan
    assert "quantize" in plan and "--target tensorrt" in plan
    assert "--precision fp16 --dla 1 --bench --layers" in plan
    assert "-m swin_edge engine" in plan and "--dla 1 --out" in plan
    assert "gpu_check summary" in plan
    assert not (tmp_path / "o").exists()  # a dry run writes nothing
    quiet = sh("--dry-run", "--dla", "off", "--skip", "pytest", "--skip", "build").stdout
    assert "pytest" not in quiet and "swin_edge build" not in quiet and "--dla" not in quiet


@pytest.mark.parametrize("flavor,weak", [("10", True), ("11", False)])
def test_trtexec_line_matches_the_installed_trtexec(tmp_path, capsys, flavor, weak):
    from swin_edge.export import ExportConfig, torch_to_onnx
    from swin_edge.model import SwinTransformer

    from .conftest import MICRO

    onnx_path = torch_to_onnx(SwinTransformer(MICRO).eval(), tmp_path / "m.onnx", ExportConfig())
    fake = tmp_path / "trtexec"
    help_line = "  --fp16    Enable fp16 precision" if weak else "  --noTF32   Disable tf32"
    fake.write_text(f"#!/usr/bin/env bash\necho '{help_line}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    args = ["trtexec-line", "--onnx", str(onnx_path.path), "--engine", "e", "--trtexec", str(fake)]
    assert main([*args, "--precision", "int8"]) == 0
    line = capsys.readouterr().out
    assert ("--stronglyTyped" in line) == weak and "--fp16" not in line
    assert "Shapes" not in line  # a static batch-1 export
    assert main([*args, "--precision", "fp16", "--dla", "0"]) == 0
    dla = capsys.readouterr().out
    assert "--useDLACore=0" in dla and ("--fp16" in dla) == weak
    assert main([*args, "--precision", "fp16", "--dla", "0", "--bench", "--layers", "l.json"]) == 0
    bench = capsys.readouterr().out
    assert bench.startswith("--loadEngine=e") and "--useDLACore=0" in bench
    assert "--exportLayerInfo=l.json" in bench
