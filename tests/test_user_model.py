"""Your own model: ``--model file.py:factory`` and ``--onnx`` through export, quantize, compare,
build, bench and deploy; the CBAM example (tests/examples/swin_cbam.py) trained on digits and a
4-output backbone end to end."""

from __future__ import annotations

import json
import tarfile
import textwrap
from pathlib import Path

import onnx
import pytest

from swin_edge.cli import main
from swin_edge.errors import SwinEdgeError
from swin_edge.model import PreprocessFlags, load_model
from swin_edge.model.config import PreprocessConfig, crop_pct_for
from swin_edge.quantize import check_symmetric_int8, plan_placement
from swin_edge.quantize.fp16 import has_fp16_scales

from .conftest import FIXTURES

EXAMPLE = Path(__file__).parent / "examples" / "swin_cbam.py"
CBAM = f"{EXAMPLE}:digits_cbam"
BACKBONE = f"{EXAMPLE}:cbam_backbone"
QUICK = ["--iterations", "2", "--rounds", "1", "--warmup", "0"]
PP = ["--mean", "0.5", "--std", "0.5", "--resize", "20", "--interpolation", "bilinear"]

# Factories for the error cases, one file; line numbers are looked up by text.
FACTORIES = """
import torch
from torch import nn


class Net(nn.Module):
    img_size = 16

    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class ShapeReader(Net):
    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return self.fc(y) + torch.zeros(x.shape[0], 4)  # DYNAMIC


class NonZero(Net):
    def forward(self, x):
        y = self.conv(x).flatten()
        idx = torch.nonzero(y > 0)  # NONZERO
        return y[idx[:4, 0]].reshape(1, 4)


class Flat(Net):
    img_size = 20  # but the layers below were built for 16 x 16

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return self.head(x.flatten(1))  # FLAT


class Predicts(Net):
    def forward(self, x):
        logits = self.fc(self.conv(x).mean((2, 3)))
        return logits, logits.argmax(-1)


class Branchy(Net):
    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # BRANCH
            return y.mean((2, 3))
        return y.amax((2, 3))


def branchy():
    return Branchy()


def predicts():
    return Predicts()


def net(width: int = 8):
    return Net(width)


def flat():
    return Flat()


def not_a_module():
    return 42


def raises():
    raise ValueError("no weights for this size")  # RAISES


def shape_reader():
    return ShapeReader()


def nonzero():
    return NonZero()


def sizeless():
    m = Net()
    m.img_size = None
    return m


def timm_like():
    m = Net()
    m.pretrained_cfg = {
        "input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "crop_pct": 0.8, "interpolation": "bilinear",
    }
    return m
"""


@pytest.fixture(scope="module")
def factories(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text(textwrap.dedent(FACTORIES))
    (path.parent / "broken.py").write_text("import torch\ndef f(:\n    pass\n")
    return path


@pytest.fixture(autouse=True)
def _image_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SWIN_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def line_of(path: Path, marker: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if marker in t)


def one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "model,extra,needle",
    [
        ("{dir}/missing.py:net", [], "missing.py' does not exist"),
        ("{py}:nothere", [], "has no 'nothere'; it defines Branchy, Flat, Net, NonZero"),
        ("{py}", [], "name the function that builds the model, e.g. "),
        ("{py}:not_a_module", [], "not_a_module() returned int, not a torch.nn.Module"),
        ("{py}:net", ["--img-size", "32"], "for 16x16 input (its img_size) but --img-size is 32"),
        ("{py}:flat", PP, "fails on a (1, 3, 20, 20) input (RuntimeError: mat1 and mat2"),
        ("{py}:flat", PP, "at {py}:{flat}); check --img-size"),
        ("{py}:branchy", PP, "(GuardOnDataDependentSymNode: Could not guard on data-dependent"),
        ("{py}:branchy", PP, "at {py}:{branch}); the forward must trace with static shapes"),
        ("{py}:predicts", PP, "returns non-float output(s) output1 (int64); swin_edge quantizes"),
        (
            "{py}:raises",
            [],
            "raises() raised ValueError: no weights for this size at {py}:{raises}",
        ),
        ("{dir}/broken.py:f", [], "failed (SyntaxError"),
        ("{py}:sizeless", [], "cannot tell the model's input size"),
        ("{py}:net", ["--num-classes", "3"], "takes no num_classes parameter"),
        ("{py}:net", ["--model-arg", "depth=2"], "net() takes no argument 'depth'"),
        ("{py}:net", [], "carries no preprocessing settings; pass --mean, --std, --resize"),
    ],
)
def test_factory_errors_are_one_line_exit_2(factories, tmp_path, capsys, model, extra, needle):
    fmt = {"dir": factories.parent, "py": factories}
    fmt.update(
        raises=line_of(factories, "# RAISES"),
        flat=line_of(factories, "# FLAT"),
        branch=line_of(factories, "# BRANCH"),
    )
    out = tmp_path / "m.onnx"
    err = one_error(capsys, ["export", "--model", model.format(**fmt), *extra, "--out", str(out)])
    assert needle.format(**fmt) in err
    assert not out.exists()


def test_factory_arguments_size_and_preprocessing(factories, tmp_path):
    m = load_model(f"{factories}:net", img_size=16, model_args=["width=4"])
    assert m.module.conv.out_channels == 4 and m.cfg.img_size == 16
    assert m.cfg.preprocess.mean == (0.485, 0.456, 0.406)  # only the size known: ImageNet
    assert m.cfg.preprocess.resize_size == 18  # 16 / 0.875
    timm = load_model(f"{factories}:timm_like", preprocess=PreprocessFlags(resize=24))
    pp = timm.cfg.preprocess
    assert (pp.mean, pp.interpolation, pp.resize_size) == ((0.5,) * 3, "bilinear", 24)
    assert load_model(f"{factories}:timm_like").cfg.preprocess.resize_size == 20  # 16 / 0.8
    swin = load_model("swin_tiny", preprocess=PreprocessFlags(mean=(0.5, 0.5, 0.5), resize=256))
    assert swin.cfg.preprocess.mean == (0.5,) * 3 and swin.cfg.preprocess.resize_size == 256
    for crop, resize in [(224, 256), (224, 248), (384, 384), (1, 3), (513, 1000)]:
        assert int(crop / crop_pct_for(crop, resize)) == resize
    with pytest.raises(SwinEdgeError, match="--crop 200 does not match the input size 224"):
        PreprocessFlags(crop=200).apply(PreprocessConfig(), 224, "m")
    with pytest.raises(SwinEdgeError, match="--resize 100 is smaller than the input size 224"):
        PreprocessFlags(resize=100).apply(PreprocessConfig(), 224, "m")


@pytest.mark.parametrize(
    "factory,marker,dynamic,needle",
    [
        ("shape_reader", "# DYNAMIC", True, "shape read from a tensor at"),
        ("nonzero", "# NONZERO", False, "data-dependent torch.nonzero"),
    ],
)
def test_linter_points_at_the_users_source_line(
    factories, tmp_path, capsys, factory, marker, dynamic, needle
):
    out = tmp_path / "m.onnx"
    args = ["export", "--model", f"{factories}:{factory}", "--img-size", "16", "--out", str(out)]
    err = one_error(capsys, args + (["--dynamic-batch"] if dynamic else []))
    assert needle in err and f"{factories}:{line_of(factories, marker)} in " in err
    assert "; compute it from the config" in err or "fixed-size mask" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def digits_dirs(tmp_path_factory) -> tuple[Path, Path]:
    from swin_edge.digits import write_digits_folders

    return write_digits_folders(tmp_path_factory.mktemp("digits"))


def test_cbam_digits_int8_both_recipes_within_one_point(digits_dirs, tmp_path, capsys):
    """Export -> INT8 (tensorrt recipe by hand, cpu recipe through `build`) -> compare."""
    calib, test = (str(p) for p in digits_dirs)
    ckpt = str(FIXTURES / "digits_cbam.pth")
    fp32, trt = tmp_path / "fp32.onnx", tmp_path / "int8-trt.onnx"
    assert main(["export", "--model", CBAM, "--checkpoint", ckpt, "--out", str(fp32)]) == 0
    argv = ["quantize", str(fp32), "--target", "tensorrt", "--calib-dir", calib, "--out", str(trt)]
    assert main([*argv, "--keep-float", "cbam.1.spatial", "--layers", "40"]) == 0
    out = capsys.readouterr().out
    assert "quantized: 10 Conv, 18 Gemm, 8 MatMul" in out  # all convs but one
    assert "kept float (--keep-float cbam.1.spatial): cbam.1.spatial.conv/Conv_0" in out
    assert "cbam.0.spatial.conv/Conv_0" in out  # the per-layer SQNR names user modules
    graph = onnx.load(str(trt)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    convs = {n.name: producers.get(n.input[0]) for n in graph.node if n.op_type == "Conv"}
    assert convs.pop("cbam.1.spatial.conv/Conv_0") != "DequantizeLinear"
    assert set(convs.values()) == {"DequantizeLinear"}  # every other conv has int8 input
    report = tmp_path / "cmp.json"
    argv = ["compare", str(fp32), str(trt), "--eval-dir", test, "--num-images", "450"]
    assert main([*argv, *QUICK, "--json", str(report)]) == 0
    ref, int8 = json.loads(report.read_text())
    assert ref["accuracy"]["count"] == 450 and ref["accuracy"]["top1"] > 0.98
    assert abs(int8["accuracy"]["top1"] - ref["accuracy"]["top1"]) <= 0.01
    assert int8["fidelity"]["top1_agreement"] >= 0.98 and "outputs" not in int8

    run = tmp_path / "run"
    argv = ["build", "--model", CBAM, "--checkpoint", ckpt, "--target", "cpu", "--runtime", "ort"]
    argv += ["--calib-dir", calib, "--eval-dir", test, "--num-eval", "450", "--out", str(run)]
    assert main([*argv, *QUICK, "--no-progress"]) == 0
    rep = json.loads((run / "report.json").read_text())
    fp, q = rep["results"]
    assert abs(q["accuracy"]["top1"] - fp["accuracy"]["top1"]) <= 0.01
    assert rep["model"]["config"]["source"] == CBAM and rep["model"]["input_shape"] == [
        1,
        3,
        32,
        32,
    ]
    kept = rep["quantization"]["kept_float"]
    assert {n for n in kept if n.startswith("cbam.")} == {
        f"cbam.{i}.{m}"
        for i in (0, 1)
        for m in (
            "channel.fc1/Conv_0",
            "channel.fc1/Conv_1",
            "channel.fc2/Conv_0",
            "channel.fc2/Conv_1",
            "spatial.conv/Conv_0",
        )
    }
    assert all(r.startswith("cpu recipe: ONNX Runtime runs a Conv in int8") for r in kept.values())
    md = (run / "report.md").read_text()
    assert "INT8 placement (cpu recipe): quantized 18 Gemm, 8 MatMul." in md
    assert "`cbam.0.spatial.conv/Conv_0`" in md and "cpu recipe: ONNX Runtime" in md


def test_nncf_tensorrt_recipe_regrids_relu_outputs(digits_dirs, tmp_path):
    """NNCF quantizes the CBAM's ReLU outputs as uint8, which TensorRT cannot take; the
    tensorrt recipe puts them on symmetric int8 and the digits accuracy holds."""
    calib, test = (str(p) for p in digits_dirs)
    ckpt = str(FIXTURES / "digits_cbam.pth")
    fp32, trt = tmp_path / "fp32.onnx", tmp_path / "nncf-trt.onnx"
    assert main(["export", "--model", CBAM, "--checkpoint", ckpt, "--out", str(fp32)]) == 0
    argv = ["quantize", str(fp32), "--target", "tensorrt", "--engine", "nncf"]
    assert main([*argv, "--calib-dir", calib, "--out", str(trt)]) == 0
    model = onnx.load(str(trt))
    check_symmetric_int8(model)
    assert any(i.name.endswith("_s8_scale") for i in model.graph.initializer)  # re-gridded
    report = tmp_path / "cmp.json"
    argv = ["compare", str(fp32), str(trt), "--eval-dir", test, "--num-images", "450"]
    assert main([*argv, *QUICK, "--json", str(report)]) == 0
    ref, int8 = json.loads(report.read_text())
    assert abs(int8["accuracy"]["top1"] - ref["accuracy"]["top1"]) <= 0.01
    assert int8["fidelity"]["top1_agreement"] >= 0.98


def test_keep_float_matches_user_module_names(tmp_path):
    from swin_edge.export import torch_to_onnx

    path = torch_to_onnx(load_model(CBAM), tmp_path / "m.onnx", verify=False).path
    plan = plan_placement(onnx.load(str(path)), "tensorrt", ["cbam.*.channel.*", "mlp.fc2"])
    assert sorted(plan.keep_float) == sorted(
        [f"cbam.{i}.channel.fc{j}/Conv_{k}" for i in (0, 1) for j in (1, 2) for k in (0, 1)]
        + [f"layers.{i}.blocks.{j}.mlp.fc2/Gemm_0" for i in (0, 1) for j in (0, 1)]
    )
    assert plan.reasons["cbam.1.channel.fc2/Conv_0"] == "--keep-float cbam.*.channel.*"
    assert "cbam.0.spatial.conv/Conv_0" in plan.gemms


def test_multi_output_backbone_from_onnx_compared_per_output(tmp_path, capsys):
    """A 4-output backbone: exported from its factory, then built from the bare ONNX (as if
    exported elsewhere) with preprocessing from flags, and bundled by deploy."""
    fp32 = tmp_path / "fp32.onnx"
    assert main(["export", "--model", BACKBONE, "--out", str(fp32)]) == 0
    model = onnx.load(str(fp32))
    assert [o.name for o in model.graph.output] == ["output0", "output1", "output2", "output3"]
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    run = tmp_path / "run"
    argv = ["build", "--onnx", str(bare), "--target", "cpu", "--runtime", "ort", "--out", str(run)]
    argv += [*QUICK, "--num-calib", "16", "--num-eval", "8", "--no-progress"]
    err = one_error(capsys, argv)
    assert "bare.onnx' (no swin_edge metadata) carries no preprocessing" in err
    assert "pass --mean, --std, --resize, --interpolation" in err and not run.exists()
    err = one_error(capsys, [*argv, "--model", "swin_small", "--checkpoint", str(fp32)])
    assert "drop --model, --checkpoint" in err
    flags = ["--mean", "0.5", "--std", "0.25,0.25,0.25", "--resize", "72"]
    assert main([*argv, *flags, "--interpolation", "bilinear"]) == 0
    rep = json.loads((run / "report.json").read_text())
    pp = rep["model"]["config"]["preprocess"]
    assert (pp["mean"], pp["interpolation"], int(64 / pp["crop_pct"])) == (
        [0.5] * 3,
        "bilinear",
        72,
    )
    outs = rep["results"][1]["outputs"]
    assert [(o["name"], o["shape"]) for o in outs] == [
        ("output0", [16, 32, 32]),
        ("output1", [32, 16, 16]),
        ("output2", [64, 8, 8]),
        ("output3", [128, 4, 4]),
    ]
    assert all(o["cosine"] > 0.99 and o["top1_agreement"] is None for o in outs)
    assert rep["results"][1]["fidelity"]["cosine"] == min(o["cosine"] for o in outs)
    md = (run / "report.md").read_text()
    assert "per output against FP32" in md and "| output3 | (128, 4, 4) |" in md
    saved = json.loads(onnx.load(str(run / "model.onnx")).metadata_props[0].value)
    assert saved["preprocess"]["std"] == [0.25] * 3  # later commands read it back

    bundle = tmp_path / "b.tar.gz"  # TensorRT INT8 + FP16: stage maps also feed the next stage
    argv = ["deploy", "--onnx", str(bare), "--precision", "int8", "--out", str(bundle)]
    assert main([*argv, *flags, "--interpolation", "bicubic", "--num-images", "8"]) == 0
    with tarfile.open(bundle) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        int8 = onnx.load_from_string(tar.extractfile("model.int8.onnx").read())
    assert manifest["model"]["preprocess"]["mean"] == [0.5] * 3
    assert [o.name for o in int8.graph.output] == ["output0", "output1", "output2", "output3"]
    assert has_fp16_scales(int8)
    onnx.shape_inference.infer_shapes(int8, check_type=True, strict_mode=True)
    assert one_error(capsys, [*argv, "--img-size", "32"]).endswith(
        "drop --img-size (they describe a model to export)"
    )


def test_bench_takes_a_factory_model(capsys):
    args = ["bench", "--model", CBAM, *QUICK, "--num-calib", "4", "--threads", "1"]
    assert main(args) == 0
    assert "2 models, 1 interleaved rounds" in capsys.readouterr().out


def test_failed_export_is_one_line_from_the_shell(factories, tmp_path):
    """torch prints graph dumps and log lines when its export fails: none reach the user."""
    import subprocess
    import sys

    args = ["export", "--model", f"{factories}:branchy", *PP, "--out", str(tmp_path / "m.onnx")]
    proc = subprocess.run(
        [sys.executable, "-m", "swin_edge", *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"at {factories}:{line_of(factories, '# BRANCH')})" in proc.stderr
