import hashlib
import json
import subprocess
import tarfile

import pytest

from swin_edge.deploy import DeployConfig, make_bundle
from swin_edge.errors import SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import SwinTransformer

from .conftest import MICRO as CFG


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    from swin_edge.calibration import load_images
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    d = tmp_path_factory.mktemp("deploy")
    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), d / "m.onnx", ExportConfig(dynamic_batch=True)
    ).path
    images = load_images(None, CFG.preprocess, use_cache=False).images
    int8 = quantize_onnx(fp32, d / "q.onnx", images, QuantRecipe(target="tensorrt")).path
    return fp32, int8


def test_bundle_contents_manifest_and_script(tmp_path, onnx_pair):
    fp32, int8 = onnx_pair
    out = make_bundle(
        tmp_path / "b.tar.gz",
        fp32,
        int8,
        CFG.to_dict(),
        DeployConfig(max_batch=4, dla_core=0),
        calibration_sha256="c" * 64,
    )
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        assert names == [
            "README.md",
            "build_engine.sh",
            "manifest.json",
            "model.fp16.onnx",
            "model.int8.onnx",
            "model.onnx",
        ]
        assert tar.getmember("build_engine.sh").mode & 0o111
        tar.extractall(tmp_path / "x", filter="data")
    x = tmp_path / "x"
    manifest = json.loads((x / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((x / name).read_bytes()).hexdigest() == meta["sha256"]
    assert manifest["model"]["img_size"] == 32 and manifest["calibration_sha256"] == "c" * 64
    assert "--useDLACore=0" in manifest["trtexec"]["int8"]
    assert "--maxShapes=input:4x3x32x32" in manifest["trtexec"]["fp16"]
    assert "--useDLACore" not in manifest["trtexec"]["fp32"]  # DLA runs fp16/int8 only
    script = (x / "build_engine.sh").read_text()
    assert subprocess.run(["bash", "-n", str(x / "build_engine.sh")]).returncode == 0
    assert "nvpmodel -q" in script and "jetson_clocks --show" in script
    assert "python3 -m swin_edge engine" in script
    # without trtexec on PATH the script records the device state, then fails clearly
    proc = subprocess.run(
        ["bash", str(x / "build_engine.sh"), "int8"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TRTEXEC": "false"},
    )
    assert proc.returncode != 0 and (x / "logs" / "device_state.txt").exists()
    assert "nvpmodel: not present" in (x / "logs" / "device_state.txt").read_text()


def test_bundle_bad_inputs(tmp_path, onnx_pair):
    fp32, _ = onnx_pair
    with pytest.raises(SwinEdgeError, match="is a .tar.gz"):
        make_bundle(tmp_path / "b.zip", fp32, None, CFG.to_dict(), DeployConfig())
    with pytest.raises(SwinEdgeError, match="needs the TensorRT-recipe Q/DQ ONNX"):
        make_bundle(tmp_path / "b.tar.gz", fp32, None, CFG.to_dict(), DeployConfig())
    assert not list(tmp_path.iterdir())
