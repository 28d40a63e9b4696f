"""Triton model repository: configs parsed into Triton's ModelConfig, checked against the ONNX,
written atomically; the JPEG ensemble; the TensorRT engine built on the device."""

import json
import os
import stat
import subprocess

import numpy as np
import onnx
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs swin_edge[triton]")

from swin_edge.errors import SwinEdgeError  # noqa: E402
from swin_edge.export import ExportConfig, torch_to_onnx  # noqa: E402
from swin_edge.model import SwinTransformer  # noqa: E402
from swin_edge.triton.deployment import (  # noqa: E402
    deploy_models,
    repository_from_run,
    write_deploy_repository,
)
from swin_edge.triton.model_config import (  # noqa: E402
    Enum,
    Map,
    check_config,
    onnx_io,
    parse_config,
    render_pbtxt,
)
from swin_edge.triton.plan import (  # noqa: E402
    BatchingConfig,
    EnsembleConfig,
    TritonModel,
    plan_repository,
)
from swin_edge.triton.preprocess import preprocess_bytes, preprocess_pil  # noqa: E402
from swin_edge.triton.repository import FORMAT, validate_repository, write_repository  # noqa: E402

from .conftest import MICRO as CFG  # noqa: E402

C, H = 3, CFG.img_size


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """MICRO as dynamic-batch FP32, static-batch FP32 and cpu-recipe INT8 ONNX."""
    from swin_edge.calibration import load_images
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    d = tmp_path_factory.mktemp("triton_onnx")
    model = SwinTransformer(CFG).eval()
    fp32 = torch_to_onnx(model, d / "m.onnx", ExportConfig(dynamic_batch=True), verify=False).path
    static = torch_to_onnx(model, d / "s.onnx", verify=False).path
    images = load_images(None, CFG.preprocess, 8, use_cache=False).images
    int8 = quantize_onnx(fp32, d / "q.onnx", images, QuantRecipe(target="cpu")).path
    return {"fp32": fp32, "static": static, "int8": int8}


def _config(planned, name):
    return next(p.config for p in planned if p.name == name)


def test_onnx_io_reads_names_types_and_dims(onnx_files):
    io = onnx_io(onnx_files["fp32"])
    assert [(t.name, t.data_type, t.dims) for t in io.inputs] == [
        ("input", "TYPE_FP32", (-1, C, H, H))
    ]
    assert [(t.name, t.data_type, t.dims) for t in io.outputs] == [
        ("logits", "TYPE_FP32", (-1, CFG.num_classes))
    ]
    assert io.batch is None
    assert onnx_io(onnx_files["static"]).batch == 1


def test_render_pbtxt_writes_messages_maps_enums_and_lists():
    text = render_pbtxt(
        {
            "name": 'a"b',
            "max_batch_size": 4,
            "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [3, -1]}],
            "parameters": Map({"k": {"string_value": "v"}}),
            "dynamic_batching": {"preferred_batch_size": [2, 4]},
            "skipped": None,
        }
    )
    assert 'name: "a\\"b"' in text and "skipped" not in text
    assert "data_type: TYPE_FP32" in text and "dims: [ 3, -1 ]" in text
    cfg = parse_config(text)
    assert cfg.name == 'a"b' and cfg.parameters["k"].string_value == "v"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]


@pytest.mark.parametrize(
    "backend,device,platform,kind",
    [
        ("tensorrt", "gpu", "tensorrt_plan", "KIND_GPU"),
        ("onnxruntime", "cpu", "onnxruntime_onnx", "KIND_CPU"),
        ("onnxruntime", "gpu", "onnxruntime_onnx", "KIND_GPU"),
        ("openvino", "cpu", "openvino", "KIND_CPU"),
        ("python", "cpu", "python", "KIND_CPU"),
    ],
)
def test_every_backend_config_is_exact(onnx_files, backend, device, platform, kind):
    from tritonclient.grpc import model_config_pb2 as pb2

    m = TritonModel("m", backend, onnx_files["fp32"], device=device, threads=2, instances=2)
    batching = BatchingConfig(max_batch_size=8, max_queue_delay_us=500)
    cfg = _config(plan_repository([m], batching), "m")
    assert (cfg.platform or cfg.backend) == platform
    assert cfg.max_batch_size == 8
    (inp,) = cfg.input
    (out,) = cfg.output
    assert (inp.name, pb2.DataType.Name(inp.data_type), list(inp.dims)) == (
        "input",
        "TYPE_FP32",
        [C, H, H],
    )
    assert (out.name, list(out.dims)) == ("logits", [CFG.num_classes])
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    (group,) = cfg.instance_group
    assert (pb2.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (kind, 2)
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    if backend == "onnxruntime":
        assert params["intra_op_thread_count"] == "2"
    elif backend == "openvino":
        assert params["INFERENCE_NUM_THREADS"] == "2"
        assert cfg.default_model_filename == "model.onnx"
    elif backend == "python":
        assert params == {"onnx_file": "model.onnx", "threads": "2", "lower_int8": "1"}
    else:  # TensorRT's engine is loaded as-is
        assert params == {}


def test_static_batch_model_has_max_batch_size_zero(onnx_files):
    planned = plan_repository(
        [
            TritonModel("ort", "onnxruntime", onnx_files["static"]),
            TritonModel("py", "python", onnx_files["static"]),
        ]
    )
    ort, py = _config(planned, "ort"), _config(planned, "py")
    assert ort.max_batch_size == 0 and not ort.HasField("dynamic_batching")
    assert list(ort.input[0].dims) == [1, C, H, H]
    # the Python runner feeds a static-batch ONNX in chunks, so it still batches
    assert py.max_batch_size == 8 and list(py.input[0].dims) == [C, H, H]
    with pytest.raises(SwinEdgeError, match="static batch of 1"):
        plan_repository(
            [TritonModel("t", "tensorrt", onnx_files["static"], device="gpu", max_batch_size=8)]
        )


def test_ensemble_on_a_static_batch_model(onnx_files):
    """Batch-1 static model (a default `build`): no batching anywhere, one image per request."""
    planned = plan_repository(
        [TritonModel("s", "onnxruntime", onnx_files["static"])],
        ensemble=EnsembleConfig("s", CFG.preprocess),
    )
    pre, ens = _config(planned, "s_preprocess"), _config(planned, "s_jpeg")
    assert pre.max_batch_size == ens.max_batch_size == 0
    assert list(pre.output[0].dims) == [1, C, H, H]
    assert list(ens.input[0].dims) == [-1] and list(ens.output[0].dims) == [1, CFG.num_classes]


def test_batching_off_and_engine_profile(onnx_files):
    off = BatchingConfig(max_batch_size=4, dynamic=False)
    cfg = _config(plan_repository([TritonModel("m", "onnxruntime", onnx_files["fp32"])], off), "m")
    assert cfg.max_batch_size == 4 and not cfg.HasField("dynamic_batching")
    both = plan_repository(
        [
            TritonModel("on", "python", onnx_files["fp32"]),
            TritonModel("off", "python", onnx_files["fp32"], dynamic_batching=False),
        ]
    )
    assert _config(both, "on").HasField("dynamic_batching")
    assert not _config(both, "off").HasField("dynamic_batching")
    trt = TritonModel("t", "tensorrt", onnx_files["fp32"], device="gpu", max_batch_size=16)
    cfg = _config(plan_repository([trt], BatchingConfig(max_batch_size=16)), "t")
    assert cfg.max_batch_size == 16
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda t: t + "no_such_field: 1\n", "not a valid Triton model config"),
        (lambda t: t.replace("KIND_CPU", "KIND_TPU"), "not a valid Triton model config"),
        (
            lambda t: t.replace("preferred_batch_size: [ 4, 8 ]", "preferred_batch_size: [ 16 ]"),
            "outside 1..max_batch_size",
        ),
        (lambda t: t.replace("max_batch_size: 8", "max_batch_size: 0"), "dynamic_batching needs"),
        (lambda t: t.replace('name: "logits"', 'name: "probs"'), "not the model's"),
        (lambda t: t.replace("dims: [ 5 ]", "dims: [ 6 ]"), "dims"),
        (lambda t: t.replace("TYPE_FP32", "TYPE_FP16", 1), "TYPE_FP16 but the model's"),
        (lambda t: t.replace("count: 1", "count: 0"), "count 0"),
        (lambda t: t.replace('name: "m"', 'name: "other"'), "folder name"),
    ],
)
def test_bad_configs_are_refused(onnx_files, edit, match):
    (p,) = plan_repository([TritonModel("m", "onnxruntime", onnx_files["fp32"])])
    io = onnx_io(onnx_files["fp32"])
    with pytest.raises(SwinEdgeError, match=match):
        check_config(parse_config(edit(p.text), "m/config.pbtxt"), "m/config.pbtxt", io, "m")


def test_tensorrt_on_cpu_is_refused(onnx_files):
    with pytest.raises(SwinEdgeError, match="runs on gpu"):
        TritonModel("t", "tensorrt", onnx_files["fp32"], device="cpu")
    (p,) = plan_repository([TritonModel("t", "tensorrt", onnx_files["fp32"], device="gpu")])
    with pytest.raises(SwinEdgeError, match="cannot run tensorrt_plan"):
        check_config(parse_config(p.text.replace("KIND_GPU", "KIND_CPU")), "t", None, "t")


def _models(onnx_files):
    return [
        TritonModel("micro_int8_python", "python", onnx_files["int8"], "int8", threads=1),
        TritonModel("micro_fp32_onnxruntime", "onnxruntime", onnx_files["fp32"]),
    ]


def test_repository_layout_manifest_and_ensemble(onnx_files, tmp_path):
    out = tmp_path / "repo"
    ens = EnsembleConfig("micro_int8_python", CFG.preprocess)
    res = write_repository(out, _models(onnx_files), ensemble=ens, base_name="micro")
    assert res.models == [
        "micro_int8_python",
        "micro_fp32_onnxruntime",
        "micro_int8_python_preprocess",
        "micro_int8_python_jpeg",
    ]
    assert sorted(p.name for p in (out / "micro_int8_python" / "1").iterdir()) == [
        "model.onnx",
        "model.py",
        "swin_edge_stub_compat.py",
    ]
    assert (out / "micro_fp32_onnxruntime" / "1" / "model.onnx").is_file()
    assert (out / "micro_int8_python_preprocess" / "1" / "swin_edge_preprocess.py").is_file()
    assert (out / "micro_int8_python_jpeg" / "1").is_dir()  # ensembles need a version folder
    manifest = json.loads((out / "repository.json").read_text())
    assert manifest["format"] == FORMAT and manifest["ensemble"] == "micro_int8_python_jpeg"
    from swin_edge.utils import sha256_file

    for model in manifest["models"].values():
        for rel, digest in model["files"].items():
            assert sha256_file(out / rel) == digest
    configs = validate_repository(out)
    pre, ens_cfg = configs["micro_int8_python_preprocess"], configs["micro_int8_python_jpeg"]
    assert pre.input[0].allow_ragged_batch and list(pre.input[0].dims) == [-1]
    assert list(pre.output[0].dims) == [C, H, H]
    steps = ens_cfg.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["micro_int8_python_preprocess", "micro_int8_python"]
    assert dict(steps[1].output_map) == {"logits": "logits"}
    assert "micro_int8_python_jpeg" in (out / "README.md").read_text()
    assert "without VNNI" not in (out / "README.md").read_text()  # no int8 ONNX Runtime model
    assert not list(tmp_path.glob(".repo.*"))  # no staging debris


def test_bad_ensemble_is_refused(onnx_files, tmp_path):
    out = tmp_path / "repo"
    write_repository(
        out, _models(onnx_files), ensemble=EnsembleConfig("micro_int8_python", CFG.preprocess)
    )
    cfg = out / "micro_int8_python_jpeg" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('value: "preprocessed"', 'value: "nowhere"', 1))
    with pytest.raises(SwinEdgeError, match="no earlier step or input makes"):
        validate_repository(out)
    with pytest.raises(SwinEdgeError, match="not a model here"):
        plan_repository(_models(onnx_files), ensemble=EnsembleConfig("nope", CFG.preprocess))


def test_nothing_is_written_when_anything_is_wrong(onnx_files, tmp_path):
    out = tmp_path / "repo"
    write_repository(out, _models(onnx_files))
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    bad = [*_models(onnx_files), TritonModel("gone", "onnxruntime", tmp_path / "missing.onnx")]
    with pytest.raises(SwinEdgeError, match="does not exist"):
        write_repository(out, bad)
    with pytest.raises(SwinEdgeError, match="two models are named"):
        write_repository(out, [*_models(onnx_files), _models(onnx_files)[0]])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert not list(tmp_path.glob(".repo.*"))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(SwinEdgeError, match="not a swin_edge Triton repository"):
        write_repository(foreign, _models(onnx_files))
    assert (foreign / "notes.txt").read_text() == "keep"
    # an earlier swin_edge repository is replaced whole
    res = write_repository(out, _models(onnx_files)[1:])
    assert res.models == ["micro_fp32_onnxruntime"] and not (out / "micro_int8_python").exists()


def test_preprocessing_equals_calibration(tmp_path):
    """The ensemble's torch-free preprocessing gives calibration's arrays exactly."""
    from PIL import Image

    from swin_edge.calibration import preprocess_image
    from swin_edge.triton.preprocess import preprocess_fields

    pp = CFG.preprocess
    fields = preprocess_fields(pp)
    rng = np.random.default_rng(0)
    cases = {
        "landscape.jpg": Image.fromarray(rng.integers(0, 255, (40, 70, 3), np.uint8)),
        "portrait.png": Image.fromarray(rng.integers(0, 255, (90, 33, 3), np.uint8)),
        "gray.png": Image.fromarray(rng.integers(0, 255, (50, 50), np.uint8), mode="L"),
        "gray16.png": Image.fromarray(rng.integers(0, 65535, (40, 45), np.uint16)),
    }
    for name, img in cases.items():
        path = tmp_path / name
        img.save(path)
        with Image.open(path) as a:
            want = preprocess_image(a, pp)
        with Image.open(path) as b:
            np.testing.assert_array_equal(preprocess_pil(b, fields), want)
        np.testing.assert_array_equal(preprocess_bytes(path.read_bytes(), fields), want)
    with pytest.raises(ValueError, match="not a readable JPEG/PNG"):
        preprocess_bytes(b"not an image", fields)


FAKE_TRTEXEC = r"""#!/usr/bin/env bash
if [ "$1" = --help ]; then echo "  --fp16   Enable fp16 precision"; exit 0; fi
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec $*"
echo "[I] Selected Device: Orin"
echo "[I] Compute Capability: 8.7"
for a in "$@"; do
  case "$a" in
    --saveEngine=*) printf 'plan %s' "$*" > "${a#*=}";;
    --exportLayerInfo=*) mkdir -p "$(dirname "${a#*=}")"; echo '{}' > "${a#*=}";;
  esac
done
"""


@pytest.fixture(scope="module")
def trt_onnx(tmp_path_factory):
    from swin_edge.calibration import load_images
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    d = tmp_path_factory.mktemp("trt_onnx")
    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), d / "m.onnx", ExportConfig(dynamic_batch=True), verify=False
    ).path
    images = load_images(None, CFG.preprocess, 8, use_cache=False).images
    int8 = quantize_onnx(fp32, d / "q.onnx", images, QuantRecipe(target="tensorrt")).path
    return fp32, int8


def test_deploy_repository_builds_the_engine_on_the_device(trt_onnx, onnx_files, tmp_path):
    from swin_edge.deploy import DeployConfig, make_bundle

    fp32, int8 = trt_onnx
    bundle = make_bundle(tmp_path / "b.tar.gz", fp32, int8, CFG.to_dict(), DeployConfig())
    out = tmp_path / "repo"
    res = write_deploy_repository(
        out,
        base="micro",
        precision="int8",
        fp32_onnx=fp32,
        int8_onnx=int8,
        bundle=bundle,
        preprocess=CFG.preprocess,
        cpu_int8_onnx=onnx_files["int8"],
        target="jetson",
    )
    assert res.models == [
        "micro_int8_tensorrt",
        "micro_fp32_onnxruntime_gpu",
        "micro_int8_onnxruntime",
        "micro_fp32_onnxruntime",
        "micro_int8_tensorrt_preprocess",
        "micro_int8_tensorrt_jpeg",
    ]
    assert res.pending_engines == ["micro_int8_tensorrt"]
    # the CPU INT8 model is the lowered file (MatMulIntegerToFloat), as the runner runs it
    import onnx

    ops = {n.op_type for n in onnx.load(out / "micro_int8_onnxruntime/1/model.onnx").graph.node}
    assert "MatMulIntegerToFloat" in ops
    trt_cfg = validate_repository(out)["micro_int8_tensorrt"]
    assert trt_cfg.platform == "tensorrt_plan" and trt_cfg.max_batch_size == 8
    assert not (out / "micro_int8_tensorrt/1/model.plan").exists()
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "TRTEXEC": str(fake), "SWIN_EDGE_USE_TRTEXEC": "1"}
    run = subprocess.run(
        [str(out / "build_engines.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr[-2000:]
    plan = (out / "micro_int8_tensorrt/1/model.plan").read_text()
    assert plan.startswith("plan ") and "8x3x32x32" in plan  # the profile's max batch 8
    manifest = json.loads((out / "micro_int8_tensorrt/1/model.plan.json").read_text())
    assert manifest["precision"] == "int8"
    with pytest.raises(SwinEdgeError, match="same --max-batch"):
        write_deploy_repository(
            tmp_path / "repo2",
            base="micro",
            precision="int8",
            fp32_onnx=fp32,
            int8_onnx=int8,
            bundle=bundle,
            preprocess=CFG.preprocess,
            max_batch_size=4,
        )
    assert not (tmp_path / "repo2").exists()


def test_deploy_models_per_target(onnx_files):
    f, q = onnx_files["fp32"], onnx_files["int8"]
    cpu = deploy_models("m", "int8", f, target="cpu", cpu_int8_onnx=q)
    names = [m.name for m in cpu]
    assert names[0] == "m_int8_onnxruntime" and "m_fp32_onnxruntime" in names
    assert all(m.device == "cpu" for m in cpu)
    ov_first = deploy_models("m", "int8", f, target="cpu", cpu_int8_onnx=q, primary="openvino")
    import platform

    if platform.machine() == "x86_64":
        assert ov_first[0].name == "m_int8_openvino" and ov_first[0].onnx == q
    gpu = deploy_models("m", "fp16", f, target="gpu", python=True)
    assert [m.name for m in gpu] == [
        "m_fp16_tensorrt",
        "m_fp32_onnxruntime_gpu",
        "m_fp32_onnxruntime",
        "m_fp32_python",
    ]
    with pytest.raises(SwinEdgeError, match="CPU precision"):
        deploy_models("m", "bf16", f, target="jetson")
    with pytest.raises(SwinEdgeError, match="needs TensorRT"):
        deploy_models("m", "fp16", f, target="cpu")


def test_repository_from_a_cpu_build_run_folder(onnx_files, tmp_path):
    """A CPU build's run folder: the runtime and threads deploy.json chose come first."""
    import shutil

    from swin_edge.backends.onnxrt_lowering import lower_file
    from swin_edge.cpu import cpu_info
    from swin_edge.runtime_select import (
        CandidateResult,
        CpuCandidate,
        Selection,
        write_deploy_manifest,
    )

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(onnx_files["fp32"], run / "model.onnx")
    shutil.copy(onnx_files["int8"], run / "model.int8-cpu.onnx")
    lower_file(run / "model.int8-cpu.onnx", run / "model.int8-cpu.ort.onnx")
    chosen = CpuCandidate("ort", "lowered", "int8", 2, str(run / "model.int8-cpu.onnx"))
    sel = Selection("int8", chosen, [CandidateResult(chosen, [1.0], 1.0, 1.0)])
    write_deploy_manifest(run / "deploy.json", sel, cpu_info(), {})
    report = {
        "model": {"config": CFG.to_dict()},
        "build": {"model": "micro", "precision": "int8"},
        "target": "cpu",
    }
    (run / "report.json").write_text(json.dumps(report))
    res = repository_from_run(run, tmp_path / "repo")
    assert (
        res.models[0] == "micro_int8_onnxruntime"
        and res.models[-1] == "micro_int8_onnxruntime_jpeg"
    )
    cfg = validate_repository(tmp_path / "repo")["micro_int8_onnxruntime"]
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"
    assert cfg.max_batch_size == 8
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "`micro_int8_onnxruntime` on an x86 CPU without VNNI" in readme  # Triton's ORT: u8s8
    from swin_edge.quantize.u8s8_safe import gemm_input_bits, narrow_file

    # ... so the 8-bit model gets its 7-bit twin, lowered as the chosen variant is
    twin = onnx.load(str(tmp_path / "repo" / "micro_int8_onnxruntime_7bit" / "1" / "model.onnx"))
    assert gemm_input_bits(twin) == 7
    assert "MatMulIntegerToFloat" in {n.op_type for n in twin.graph.node}
    assert "Serve `micro_int8_onnxruntime_7bit` on such a CPU" in readme
    # where the 7-bit model won (a CPU whose u8s8 kernels clamp), Triton serves that model

    seven = narrow_file(run / "model.int8-cpu.onnx", run / "model.int8-cpu7.onnx")
    (run / "model.int8-cpu.ort.onnx").unlink()
    chosen = CpuCandidate("ort", "as-written-7bit", "int8", 1, str(seven))
    sel = Selection("int8", chosen, [CandidateResult(chosen, [1.0], 1.0, 1.0)])
    write_deploy_manifest(run / "deploy.json", sel, cpu_info(), {})
    repository_from_run(run, tmp_path / "repo2")
    served = onnx.load(str(tmp_path / "repo2" / "micro_int8_onnxruntime" / "1" / "model.onnx"))
    assert gemm_input_bits(served) == 7
    assert "MatMulIntegerToFloat" not in {n.op_type for n in served.graph.node}  # as written
    assert "without VNNI" not in (tmp_path / "repo2" / "README.md").read_text()
    assert not (tmp_path / "repo2" / "micro_int8_onnxruntime_7bit").exists()  # no twin needed
    # a build with --gemm-input-bits 7: its cpu-recipe model is 7-bit already, no twin either
    shutil.copy(seven, run / "model.int8-cpu.onnx")
    chosen = CpuCandidate("ort", "as-written", "int8", 1, str(run / "model.int8-cpu.onnx"))
    sel = Selection("int8", chosen, [CandidateResult(chosen, [1.0], 1.0, 1.0)])
    write_deploy_manifest(run / "deploy.json", sel, cpu_info(), {})
    repository_from_run(run, tmp_path / "repo4")
    assert not (tmp_path / "repo4" / "micro_int8_onnxruntime_7bit").exists()
    with pytest.raises(SwinEdgeError, match="already 7-bit"):  # narrowing twice: 6 bits
        narrow_file(seven, tmp_path / "twice.onnx")
    with pytest.raises(SwinEdgeError, match="not a finished build run folder"):
        repository_from_run(tmp_path, tmp_path / "repo3")


def test_python_model_runs_a_static_batch_onnx_in_chunks(onnx_files):
    """The Python-backend template batches requests even for a static-batch ONNX."""
    from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
    from swin_edge.triton.python_model import TritonPythonModel

    runner = OnnxrtRunner(onnx_files["static"], OrtConfig(threads=1))
    runner.activate()
    model = TritonPythonModel()
    model.runner, model.output_names = runner, ["logits"]
    x = np.random.default_rng(0).standard_normal((3, C, H, H), dtype=np.float32)
    (got,) = model.run(x)
    np.testing.assert_allclose(got, runner.infer(x), rtol=1e-6, atol=1e-6)
