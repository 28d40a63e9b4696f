import hashlib
import json
import stat
import subprocess
import tarfile

import pytest

from swin_edge.backends.tensorrt import check_manifest
from swin_edge.deploy import DeployConfig, deploy_export_config, make_bundle
from swin_edge.errors import SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import SwinTransformer

from .conftest import MICRO as CFG

# A stand-in trtexec: the banner, device block and files the real one writes (formats from
# NVIDIA/TensorRT samples/common: logging.h, sampleDevice.cpp, sampleReporting.cpp). FAKE_TRT=11
# makes its --help lack --fp16 (TensorRT 11 removed the precision flags).
FAKE_TRTEXEC = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
if [ "$1" = --help ]; then
  echo "=== Build Options ==="
  [ "${FAKE_TRT:-10}" = 10 ] && echo "  --fp16                             Enable fp16 precision"
  echo "  --noTF32                           Disable tf32 precision"
  exit 0
fi
v=100300; [ "${FAKE_TRT:-10}" = 11 ] && v=110400
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v$v] # trtexec $*"
echo "[11/25/2026-09:00:00] [I] Selected Device: Orin"
echo "[11/25/2026-09:00:00] [I] Compute Capability: 8.7"
for a in "$@"; do
  case "$a" in
    --saveEngine=*) printf 'plan %s' "$*" > "${a#*=}";;
    --exportLayerInfo=*) mkdir -p "$(dirname "${a#*=}")"; echo '{"Layers": []}' > "${a#*=}";;
  esac
done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v$v] # trtexec $*"
"""


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
    static = torch_to_onnx(
        SwinTransformer(CFG).eval(),
        d / "s.onnx",
        deploy_export_config(DeployConfig(precision="fp16", dla_core=0)),
    ).path
    return fp32, int8, static


def _extract(out, dest):
    with tarfile.open(out) as tar:
        names = sorted(tar.getnames())
        assert tar.getmember("build_engine.sh").mode & 0o111
        tar.extractall(dest, filter="data")
    return names


@pytest.fixture
def fake_trtexec(tmp_path):
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text(FAKE_TRTEXEC)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run(script, precision, trtexec, log, flavor="10"):
    env = {
        "PATH": "/usr/bin:/bin",
        "TRTEXEC": str(trtexec),
        "FAKE_LOG": str(log),
        "FAKE_TRT": flavor,
        "SWIN_EDGE_USE_TRTEXEC": "1",
    }
    return subprocess.run(["bash", str(script), precision], capture_output=True, text=True, env=env)


def test_bundle_contents_manifest_and_script(tmp_path, onnx_pair):
    fp32, int8, _ = onnx_pair
    out = make_bundle(
        tmp_path / "b.tar.gz", fp32, int8, CFG.to_dict(), DeployConfig(max_batch=4), "c" * 64
    )
    x = tmp_path / "x"
    names = _extract(out, x)
    assert names == [
        "README.md",
        "build_engine.sh",
        "manifest.json",
        "model.fp16.onnx",
        "model.int8.onnx",
        "model.onnx",
    ]
    manifest = json.loads((x / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((x / name).read_bytes()).hexdigest() == meta["sha256"]
    assert manifest["model"]["img_size"] == 32 and manifest["calibration_sha256"] == "c" * 64
    assert manifest["devices"] == {"fp32": "GPU", "fp16": "GPU", "int8": "GPU"}
    lines = manifest["trtexec"]
    assert "--maxShapes=input:4x3x32x32" in lines["fp16"]["build_10x"]
    assert "--shapes=input:1x3x32x32" in lines["int8"]["bench"]  # the batch it is timed at
    assert "--stronglyTyped" in lines["int8"]["build_10x"]
    assert "--stronglyTyped" not in lines["int8"]["build_11x"]
    assert "--noTF32" in lines["fp32"]["build_11x"]
    assert not any("--useDLACore" in v for p in lines.values() for v in p.values())
    script = (x / "build_engine.sh").read_text()
    assert subprocess.run(["bash", "-n", str(x / "build_engine.sh")]).returncode == 0
    assert "nvpmodel -q" in script and "jetson_clocks --show" in script
    assert "python3 -m swin_edge engine" in script
    # without trtexec the script records the device state, then fails clearly
    proc = subprocess.run(
        ["bash", str(x / "build_engine.sh"), "int8"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "TRTEXEC": "/nonexistent/trtexec"},
    )
    assert proc.returncode == 3 and "trtexec not found" in proc.stderr
    assert "nvpmodel: not present" in (x / "logs" / "device_state.txt").read_text()


@pytest.mark.parametrize("flavor", ["10", "11"])
def test_trtexec_branch_builds_benchmarks_and_writes_the_manifest(
    tmp_path, onnx_pair, fake_trtexec, flavor
):
    fp32, int8, _ = onnx_pair
    out = make_bundle(tmp_path / "b.tar.gz", fp32, int8, CFG.to_dict(), DeployConfig(), "c" * 64)
    x = tmp_path / "x"
    _extract(out, x)
    log = tmp_path / "calls.log"
    proc = _run(x / "build_engine.sh", "int8", fake_trtexec, log, flavor)
    assert proc.returncode == 0, proc.stderr
    help_, build, bench = log.read_text().splitlines()
    assert help_ == "--help"
    assert "--onnx=model.int8.onnx" in build and "--shapes=input:1x3x32x32" in build
    assert ("--stronglyTyped" in build) == (flavor == "10") and "--fp16" not in build
    assert "--loadEngine=model.int8.engine" in bench and "--shapes=input:1x3x32x32" in bench
    assert "--exportLayerInfo=logs/layers_int8.json" in bench
    engine = x / "model.int8.engine"
    manifest = json.loads((x / "model.int8.engine.json").read_text())
    version = "10.3.0" if flavor == "10" else "11.4.0"
    assert manifest["tensorrt_version"] == version and manifest["built_by"] == "trtexec"
    assert manifest["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert (
        manifest["onnx_sha256"] == hashlib.sha256((x / "model.int8.onnx").read_bytes()).hexdigest()
    )
    assert manifest["calibration_sha256"] == "c" * 64 and manifest["dla_core"] is None
    assert manifest["input_shape"] == [-1, 3, 32, 32] and manifest["label"] == "int8"
    gpu = {"gpu_name": "Orin", "compute_capability": "8.7"}
    check_manifest(manifest, version + ".5", gpu, engine)  # what the runner checks on load
    # a rebuild replaces the manifest; a failed rebuild leaves none behind
    env_fail = tmp_path / "bin2"
    env_fail.mkdir()
    (env_fail / "trtexec").write_text("#!/usr/bin/env bash\nexit 1\n")
    (env_fail / "trtexec").chmod(0o755)
    proc = _run(x / "build_engine.sh", "int8", env_fail / "trtexec", log, flavor)
    assert proc.returncode != 0 and not (x / "model.int8.engine.json").exists()


def test_dla_bundle_is_static_and_puts_only_fp16_on_dla(tmp_path, onnx_pair, fake_trtexec):
    fp32, int8, static = onnx_pair
    cfg = DeployConfig(precision="fp16", dla_core=0)
    assert not deploy_export_config(cfg).dynamic_batch
    assert deploy_export_config(DeployConfig()).dynamic_batch
    out = make_bundle(tmp_path / "b.tar.gz", static, int8, CFG.to_dict(), cfg)
    x = tmp_path / "x"
    _extract(out, x)
    manifest = json.loads((x / "manifest.json").read_text())
    assert manifest["devices"] == {"fp32": "GPU", "fp16": "DLA", "int8": "GPU"}
    assert manifest["input_shape"] == [1, 3, 32, 32]
    lines = manifest["trtexec"]
    assert "--useDLACore=0" in lines["fp16"]["build_10x"] and "--fp16" in lines["fp16"]["build_10x"]
    assert (
        "--useDLACore=0" in lines["fp16"]["build_11x"]
        and "--fp16" not in lines["fp16"]["build_11x"]
    )
    assert "--useDLACore=0" in lines["fp16"]["bench"]
    assert "Shapes" not in lines["fp16"]["build_10x"]  # static batch: min = opt = max
    for p in ("fp32", "int8"):
        assert "--useDLACore" not in lines[p]["build_10x"] + lines[p]["bench"]
    log = tmp_path / "calls.log"
    for precision in ("fp32", "fp16"):
        assert _run(x / "build_engine.sh", precision, fake_trtexec, log).returncode == 0
    calls = log.read_text().splitlines()
    fp32_build, fp32_bench, fp16_build, fp16_bench = (c for c in calls if c != "--help")
    assert "--useDLACore" not in fp32_build + fp32_bench  # fp32 on a DLA bundle: the GPU
    assert "--useDLACore=0" in fp16_build and "--allowGPUFallback" in fp16_build
    assert "--useDLACore=0" in fp16_bench
    dla = json.loads((x / "model.fp16.engine.json").read_text())
    assert dla["dla_core"] == 0 and dla["strongly_typed"] is False  # weakly typed on 10.x
    assert json.loads((x / "model.fp32.engine.json").read_text())["dla_core"] is None
    script = (x / "build_engine.sh").read_text()
    assert "ENGINE_DLA='--dla 0'" in script and script.count("--dla 0") == 1


def test_bundle_bad_inputs(tmp_path, onnx_pair):
    fp32, _, _ = onnx_pair
    with pytest.raises(SwinEdgeError, match="is a .tar.gz"):
        make_bundle(tmp_path / "b.zip", fp32, None, CFG.to_dict(), DeployConfig())
    with pytest.raises(SwinEdgeError, match="needs the TensorRT-recipe Q/DQ ONNX"):
        make_bundle(tmp_path / "b.tar.gz", fp32, None, CFG.to_dict(), DeployConfig())
    with pytest.raises(SwinEdgeError, match="dynamic batch.*DLA needs a static batch"):
        make_bundle(
            tmp_path / "b.tar.gz", fp32, None, CFG.to_dict(), DeployConfig("fp16", dla_core=0)
        )
    with pytest.raises(SwinEdgeError, match="INT8 on DLA is not supported.*--precision fp16"):
        DeployConfig(precision="int8", dla_core=0)
    with pytest.raises(SwinEdgeError, match="DLA runs FP16"):
        DeployConfig(precision="fp32", dla_core=0)
    assert not list(tmp_path.iterdir())
