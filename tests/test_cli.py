import subprocess
import sys

import pytest
import torch

from swin_edge.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "swin_edge", *args], capture_output=True, text=True, timeout=300
    )


def test_help_explains_every_command():
    out = run_cli("--help").stdout
    for cmd in ("build", "export", "lint", "quantize", "compare", "bench", "report", "deploy"):
        assert f"  {cmd} " in out


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
    from .test_export import _DynamicSwinLike

    path = tmp_path / "dyn.onnx"
    torch.onnx.export(
        _DynamicSwinLike(),
        (torch.randn(1, 3, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        dynamic_axes={"x": {0: "b"}},
    )
    assert main(["lint", str(path)]) == 1
    assert "dynamic-shape ops: Shape" in capsys.readouterr().out
