"""The deploy and build commands end to end: DLA bundles, Triton repositories."""

import json
import tarfile

import onnx
import pytest

from swin_edge.cli import main

SMALL = ["--img-size", "64", "--window-size", "2", "--num-classes", "5"]


def test_dla_bundle_exports_a_static_batch(tmp_path, capsys):
    out = tmp_path / "dla.tar.gz"
    args = ["deploy", "--precision", "fp16", "--dla", "0", "--batch", "2", "--out", str(out)]
    assert main([*args, *SMALL]) == 0
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        model = onnx.load_from_string(tar.extractfile("model.fp16.onnx").read())
        script = tar.extractfile("build_engine.sh").read().decode()
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_value == 2  # min = opt = max, as DLA requires
    assert manifest["deploy"]["dla_core"] == 0 and manifest["deploy"]["batch"] == 2
    fp32_case = next(line for line in script.splitlines() if line.startswith("  fp32)"))
    assert "useDLACore" not in fp32_case  # only fp16 goes to DLA


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--precision", "int8", "--dla", "0"], "INT8 on DLA"),
        (["--out", "bundle.zip"], "must end in .tar.gz"),
    ],
)
def test_deploy_refuses_before_any_work(tmp_path, capsys, args, needle):
    assert main(["deploy", *args, *SMALL]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_deploy_format_triton_writes_a_valid_repository(tmp_path, capsys):
    from swin_edge.triton.repository import validate_repository

    repo = tmp_path / "repo"
    args = ["deploy", "--format", "triton", "--out", str(repo), "--num-images", "4"]
    assert main([*args, "--triton-target", "gpu", *SMALL]) == 0
    configs = validate_repository(repo)  # every config.pbtxt parsed by Triton's protobuf
    names = set(configs)
    assert any(n.endswith("_int8_tensorrt") for n in names)
    assert any(n.endswith("_int8_onnxruntime") for n in names)
    # its 7-bit twin for x86 servers without VNNI/AMX (Triton's ONNX Runtime clamps 8 bits there)
    seven = next(n for n in names if n.endswith("_int8_onnxruntime_7bit"))
    info = json.loads((repo / "repository.json").read_text())["models"][seven]
    assert info["gemm_input_bits"] == 7 and f"Serve `{seven}` on such a CPU" in (
        repo / "README.md"
    ).read_text().replace("\n", " ")
    assert any(n.endswith("_jpeg") for n in names)
    assert (repo / "build_engines.sh").is_file()  # the engine is built on the device
    trt = configs[next(n for n in names if n.endswith("_int8_tensorrt"))]
    assert trt.max_batch_size == 8 and trt.dynamic_batching.max_queue_delay_microseconds == 2000
    assert "wrote" in capsys.readouterr().out


def test_build_triton_serves_what_the_run_deployed(tmp_path):
    from swin_edge.triton.repository import validate_repository

    repo = tmp_path / "repo"
    args = ["build", "--target", "cpu", "--runtime", "ort", "--threads", "1", "--no-progress"]
    args += ["--out", str(tmp_path / "run"), "--num-calib", "4", "--num-eval", "4"]
    args += ["--iterations", "3", "--triton", str(repo)]
    assert main([*args, *SMALL]) == 0
    configs = validate_repository(repo)
    first = json.loads((repo / "repository.json").read_text())
    assert configs and first
    deployed = json.loads((tmp_path / "run" / "deploy.json").read_text())["chosen"]
    int8 = [c for n, c in configs.items() if n.endswith("_int8_onnxruntime")]
    assert int8 and int8[0].max_batch_size == 8  # build --triton exports a dynamic batch
    assert deployed["runtime"] == "ort"
