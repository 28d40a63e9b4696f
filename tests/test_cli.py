import subprocess
import sys

import onnx
import pytest
import torch

from swin_edge.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swin_edge", *args], capture_output=True, text=True, timeout=300
    )


def test_help_explains_every_command():
    out = run_cli("--help").stdout
    order = ["build", "export", "lint", "quantize", "compare", "bench", "report", "deploy"]
    positions = [out.index(f"  {cmd} ") for cmd in [*order, "engine", "variants"]]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "swin_huge"], "unknown model 'swin_huge'"),
        (["--img-size", "100"], "img_size 100 does not fit"),
        (["--checkpoint", "{tmp}/missing.pth"], "missing.pth' does not exist"),
        (["--checkpoint", "{tmp}/corrupt.pth"], "corrupt.pth' could not be read"),
    ],
)
def test_export_bad_input_one_line_exit_2_no_files(tmp_path, args, needle):
    (tmp_path / "corrupt.pth").write_bytes(b"\x00garbage")
    out = tmp_path / "out" / "m.onnx"
    proc = run_cli("export", *[a.format(tmp=tmp_path) for a in args], "--out", str(out))
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_export_and_lint_roundtrip(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    args = [
        "export",
        "--model",
        "swin_tiny",
        "--img-size",
        "64",
        "--window-size",
        "2",
        "--num-classes",
        "5",
        "--dynamic-batch",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "static and TensorRT-parsable, max |onnxruntime - torch|" in capsys.readouterr().out
    assert main(["lint", str(out)]) == 0
    assert main(["lint", str(out), "--static-batch"]) == 1
    assert "'input' dim 0 is symbolic" in capsys.readouterr().out


def test_checkpoint_of_other_architecture_is_refused(tmp_path, reference, capsys):
    ckpt = tmp_path / "small.pth"
    torch.save(reference["torchvision_state"], ckpt)  # 3 stages: not a swin_tiny
    out = tmp_path / "m.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(ckpt),
                "--img-size",
                "64",
                "--window-size",
                "4",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "does not match the model" in capsys.readouterr().err
    assert not out.exists()


def test_lint_cli_fails_on_dynamic_model(tmp_path, capsys):
    from .test_export import export_dynamic

    path = export_dynamic(tmp_path / "dyn.onnx", {0: "b"})
    assert main(["lint", str(path)]) == 1
    assert "dynamic-shape ops: Shape" in capsys.readouterr().out


def test_quantize_and_compare_commands(tmp_path, capsys):
    fp32 = tmp_path / "m.onnx"
    assert (
        main(
            [
                "export",
                "--img-size",
                "64",
                "--window-size",
                "2",
                "--num-classes",
                "5",
                "--out",
                str(fp32),
            ]
        )
        == 0
    )
    int8 = tmp_path / "m.int8.onnx"
    assert (
        main(
            [
                "quantize",
                str(fp32),
                "--out",
                str(int8),
                "--num-images",
                "6",
                "--layers",
                "2",
                "--ort-out",
                str(tmp_path / "m.int8.ort.onnx"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "6 calibration images" in out and "worst layers by SQNR" in out
    assert "Gemms lowered to MatMulIntegerToFloat" in out
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.int8.ort.onnx")).graph.node}
    assert "MatMulIntegerToFloat" in ops and "Gemm" not in ops
    report = tmp_path / "cmp.json"
    assert (
        main(
            [
                "compare",
                str(fp32),
                str(int8),
                "--num-images",
                "4",
                "--iterations",
                "3",
                "--warmup",
                "1",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    import json

    rows = json.loads(report.read_text())
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    assert rows[1]["fidelity"]["cosine"] > 0.9 and rows[0]["latency"]["p50_ms"] > 0
    assert rows[0]["runtime"]["lowered_gemms"] == 0 and rows[1]["runtime"]["lowered_gemms"] > 0
    args = ["compare", str(fp32), str(int8), "--num-images", "4", "--iterations", "1"]
    assert main([*args, "--warmup", "0", "--no-lowering", "--json", str(report)]) == 0
    plain = json.loads(report.read_text())[1]
    from swin_edge.cpu import cpu_info

    exact = cpu_info().u8s8_saturates  # ONNX Runtime's exact int8 kernels where u8s8 saturates
    assert plain["runtime"] == {
        "threads": 0,
        "lower_int8": False,
        "lowered_gemms": 0,
        "exact_u8s8": exact,
    }
    assert plain["fidelity"]["sqnr_db"] == pytest.approx(rows[1]["fidelity"]["sqnr_db"], abs=1.0)


def test_quantize_bad_inputs(tmp_path, capsys):
    assert main(["quantize", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(plain), dynamo=False)
    assert main(["quantize", str(plain)]) == 2
    assert "carries no swin_edge config" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    fp32 = tmp_path / "m.onnx"
    main(["export", "--img-size", "64", "--window-size", "2", "--out", str(fp32)])
    assert main(["quantize", str(fp32), "--calib-dir", str(empty)]) == 2
    assert "no usable images in" in capsys.readouterr().err
    seven = ["quantize", str(fp32), "--target", "tensorrt", "--gemm-input-bits", "7"]
    assert main(seven) == 2
    err = capsys.readouterr().err
    assert "--gemm-input-bits 7 is for --target cpu" in err and len(err.strip().splitlines()) == 1
    assert main(["deploy", "--onnx", str(fp32), "--gemm-input-bits", "7"]) == 2  # TensorRT
    assert "argument --gemm-input-bits" in capsys.readouterr().err
    assert not list(tmp_path.glob("*int8*"))
