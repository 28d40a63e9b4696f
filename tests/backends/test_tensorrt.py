import hashlib
import importlib.util
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from swin_edge.backends import tensorrt as trtb
from swin_edge.backends.tensorrt import (
    TrtBuildConfig,
    TrtCaps,
    builder_flag_names,
    check_manifest,
    cleared_builder_flag_names,
    network_flag_names,
    onnx_to_engine,
    onnx_to_fp16,
    profile_shapes,
    read_manifest,
    release,
    same_release,
    strongly_typed,
    summarize_layers,
    trtexec_bench_command,
    trtexec_command,
)
from swin_edge.errors import MissingDependencyError, SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import SwinTransformer

from ..conftest import FIXTURES
from ..conftest import MICRO as CFG
from .fake_tensorrt import API, VERSIONS, Behaviour, install, make_tensorrt

CAPS = {v: TrtCaps.from_module(make_tensorrt(v, Behaviour())) for v in VERSIONS}
TRTEXEC_OPTS = API["trtexec_options"]
INT8_LAYERS = FIXTURES / "gpu_check" / "trtexec" / "int8.layers.json"


# --------------------------------------------------------------------------------------------
# Version parsing and capabilities, against the real binding name lists


def test_api_fixture_is_the_three_real_binding_wheels():
    assert "wheel" in API["_provenance"] and VERSIONS == ("10.3", "10.13", "11.4")
    for v in API["versions"].values():
        assert re.fullmatch(r"[0-9a-f]{64}", v["wheel_sha256"]) and v["wheel"].endswith(".whl")
    assert API["versions"]["10.13"]["__version__"] == "10.13.3.9.post1"


def test_capabilities_are_detected_from_the_module():
    for v in ("10.3", "10.13"):
        assert CAPS[v].weak_typing and CAPS[v].tf32_flag and CAPS[v].major == 10
    # TensorRT 11 removed weak typing: no BuilderFlag.FP16/INT8 in 11.4's real names
    assert "FP16" not in API["versions"]["11.4"]["enums"]["BuilderFlag"]
    assert not CAPS["11.4"].weak_typing and CAPS["11.4"].tf32_flag and CAPS["11.4"].major == 11


def test_release_and_same_release():
    assert release("10.13.3.9.post1") == (10, 13, 3, 9)
    assert release("v100300") == release("100300") == (10, 3, 0)
    assert release("v110100") == (11, 1, 0)
    assert same_release("10.13.3.9.post1", "10.13.3.9")  # a re-packaged wheel, same libraries
    assert same_release("10.13.3.9", "10.13.3")  # trtexec's banner has no build number
    assert not same_release("10.3.0", "10.13.3.9.post1")
    assert not same_release("10.13.3.9", "10.13.3.10")


@pytest.mark.parametrize("version", VERSIONS)
def test_import_tensorrt_accepts_every_release(monkeypatch, version):
    install(monkeypatch, version, Behaviour())
    assert trtb.import_tensorrt().__version__ == API["versions"][version]["__version__"]


def test_network_and_builder_flags_per_version():
    c10, c11 = CAPS["10.3"], CAPS["11.4"]
    assert network_flag_names(c10, True) == ["STRONGLY_TYPED"]
    assert network_flag_names(c11, True) == []  # deprecated no-op in 11
    assert network_flag_names(c10, False) == []
    gpu = TrtBuildConfig(precision="int8")
    assert builder_flag_names(gpu, c10) == builder_flag_names(gpu, c11) == []
    dla = TrtBuildConfig(precision="fp16", dla_core=0, max_batch=1)
    assert not strongly_typed(dla, c10) and strongly_typed(dla, c11)
    assert builder_flag_names(dla, c10) == ["FP16", "GPU_FALLBACK"]
    assert builder_flag_names(dla, c11) == ["GPU_FALLBACK"]  # no AttributeError on 11
    for c in (c10, c11):
        assert cleared_builder_flag_names(TrtBuildConfig(precision="fp32"), c) == ["TF32"]
        assert cleared_builder_flag_names(TrtBuildConfig(precision="fp32", tf32=True), c) == []
        assert cleared_builder_flag_names(TrtBuildConfig(precision="fp16"), c) == []
    assert TrtBuildConfig(precision="fp32", tf32=True).label == "tf32"
    assert TrtBuildConfig(precision="fp32").label == "fp32"


def test_profile_for_dynamic_batch_only():
    cfg = TrtBuildConfig(min_batch=1, opt_batch=4, max_batch=16)
    assert profile_shapes((1, 3, 224, 224), cfg) is None
    assert profile_shapes(("batch", 3, 224, 224), cfg) == (
        (1, 3, 224, 224),
        (4, 3, 224, 224),
        (16, 3, 224, 224),
    )
    with pytest.raises(SwinEdgeError, match="DLA needs a static batch"):
        profile_shapes(("batch", 3, 224, 224), TrtBuildConfig(precision="fp16", dla_core=0))


def _flags(cmd: str) -> list[str]:
    return [a.split("=", 1)[0] for a in cmd.split()[1:]]


@pytest.mark.parametrize("weak", [True, False])
def test_trtexec_lines_use_only_options_that_trtexec_parses(weak):
    opts = set(TRTEXEC_OPTS["10.3"] if weak else TRTEXEC_OPTS["11.1"])
    shape = ("batch", 3, 224, 224)
    cfgs = [
        TrtBuildConfig(precision=p, timing_cache="t.cache", max_batch=8)
        for p in ("fp32", "fp16", "int8")
    ] + [TrtBuildConfig(precision="fp16", dla_core=0)]
    for cfg in cfgs:
        s = (1, 3, 224, 224) if cfg.dla_core is not None else shape
        build = trtexec_command("m.onnx", "m.engine", cfg, "input", s, weak, "layers.json")
        bench = trtexec_bench_command("m.engine", cfg, "input", s, export_layer_info="l.json")
        for line in (build, bench):
            assert set(_flags(line)) <= opts, set(_flags(line)) - opts
        assert ("--stronglyTyped" in build) == (weak and cfg.dla_core is None)
        assert ("--fp16" in build) == (weak and cfg.dla_core is not None)
        assert "--int8" not in build and "--profilingVerbosity=detailed" in build
        assert ("--noTF32" in build) == (cfg.precision == "fp32")
        dla = cfg.dla_core is not None
        assert ("--useDLACore=0" in build) == ("--useDLACore=0" in bench) == dla
        assert ("--allowGPUFallback" in build) == dla
    assert "--fp16" not in TRTEXEC_OPTS["11.1"] and "--fp16" in TRTEXEC_OPTS["10.3"]


def test_trtexec_lines_state_the_batch_of_a_dynamic_engine():
    cfg = TrtBuildConfig(precision="int8", opt_batch=4, max_batch=8)
    build = trtexec_command("m.onnx", "m.engine", cfg, "input", ("batch", 3, 32, 32))
    for part in (
        "--minShapes=input:1x3x32x32",
        "--optShapes=input:4x3x32x32",
        "--maxShapes=input:8x3x32x32",
        "--shapes=input:4x3x32x32",
    ):
        assert part in build
    bench = trtexec_bench_command("m.engine", cfg, "input", ("batch", 3, 32, 32))
    assert "--shapes=input:4x3x32x32" in bench
    assert "--shapes=input:2x3x32x32" in trtexec_bench_command(
        "m.engine", cfg, "input", ("batch", 3, 32, 32), batch=2
    )
    with pytest.raises(SwinEdgeError, match="outside the engine's profile"):
        trtexec_bench_command("m.engine", cfg, "input", ("batch", 3, 32, 32), batch=16)
    static = trtexec_bench_command("m.engine", cfg, "input", (1, 3, 32, 32))
    assert "--shapes" not in static


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(precision="int4"), "choose fp32, fp16 or int8"),
        (dict(optimization_level=7), "use 0..5"),
        (dict(min_batch=4, opt_batch=2), "min <= opt <= max"),
        (dict(precision="fp32", dla_core=0), "DLA runs FP16"),
        (dict(precision="int8", dla_core=0), "INT8 on DLA is not supported.*--precision fp16"),
        (dict(precision="fp16", dla_core=-1), "numbered from 0"),
        (dict(precision="fp16", tf32=True), "fp32 engines only"),
    ],
)
def test_build_config_validation(kw, match):
    with pytest.raises(SwinEdgeError, match=match):
        TrtBuildConfig(**kw)


def test_dla_request_refused_with_dynamic_batch():
    trtb.check_dla_request(0, "fp16", dynamic_batch=False)
    trtb.check_dla_request(None, "int8", dynamic_batch=True)
    with pytest.raises(SwinEdgeError, match="DLA needs a static batch.*--dynamic-batch"):
        trtb.check_dla_request(0, "fp16", dynamic_batch=True)


# --------------------------------------------------------------------------------------------
# Manifests


def _engine_with_manifest(tmp_path, **over):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    manifest = {
        "engine_sha256": hashlib.sha256(b"plan").hexdigest(),
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
        **over,
    }
    (tmp_path / "m.engine.json").write_text(json.dumps(manifest))
    return engine, manifest


def test_manifest_mismatch_is_refused(tmp_path):
    orin = {"gpu_name": "Orin", "compute_capability": "8.7"}
    engine, manifest = _engine_with_manifest(tmp_path)
    check_manifest(manifest, "10.3.0", orin, engine)
    with pytest.raises(SwinEdgeError, match="TensorRT 10.3.0 .running 10.8.0.*rebuild"):
        check_manifest(manifest, "10.8.0", orin, engine)
    l4 = {"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}
    with pytest.raises(SwinEdgeError, match="compute capability 8.7 .this GPU: 8.9"):
        check_manifest(manifest, "10.3.0", l4, engine)
    with pytest.raises(SwinEdgeError, match="has no manifest"):
        read_manifest(tmp_path / "x.engine")


def test_manifest_checks_the_engine_hash(tmp_path):
    orin = {"gpu_name": "Orin", "compute_capability": "8.7"}
    engine, manifest = _engine_with_manifest(tmp_path)
    engine.write_bytes(b"another plan")  # rebuilt without its manifest
    with pytest.raises(SwinEdgeError, match="does not match its manifest .sha256"):
        check_manifest(manifest, "10.3.0", orin, engine)
    del manifest["engine_sha256"]
    with pytest.raises(SwinEdgeError, match="no engine_sha256"):
        check_manifest(manifest, "10.3.0", orin, engine)


def test_manifest_accepts_a_post_release_of_the_same_tensorrt(tmp_path):
    gpu = {"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}
    engine, manifest = _engine_with_manifest(tmp_path, tensorrt_version="10.13.3.9", **gpu)
    check_manifest(manifest, "10.13.3.9.post1", gpu, engine)
    engine, manifest = _engine_with_manifest(tmp_path, tensorrt_version="10.13.3", **gpu)
    check_manifest(manifest, "10.13.3.9.post1", gpu, engine)  # written from trtexec's banner


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_missing_tensorrt_names_the_fix():
    with pytest.raises(MissingDependencyError, match="swin_edge\\[tensorrt\\].*JetPack"):
        trtb.import_tensorrt()
    assert trtb.tensorrt_available() is False


# --------------------------------------------------------------------------------------------
# Engine inspector: layer devices and precisions


def test_layer_summary_from_inspector_json():
    s = summarize_layers(INT8_LAYERS.read_text())
    assert s.detailed and s.total > 100 and s.gpu == s.total and s.dla == 0
    assert s.precisions["int8"] > 30 and s.precisions["fp16"] > 30
    assert not s.fp32_unexpected  # FP32 only for LayerNorm/Softmax and the network I/O
    assert s.fp32_expected and all(
        re.search("LayerNorm|Softmax|MeaSub|MaxSub|Cast", n) for n in s.fp32_expected
    )
    data = json.loads(INT8_LAYERS.read_text())
    gemm = next(la for la in data["Layers"] if la["LayerType"] == "gemm")
    gemm["Inputs"][0]["Format/Datatype"] = "Row major linear FP32"  # an FP32 GEMM
    data["Layers"].append({"Name": "{ForeignNode[a...b]}", "LayerType": "DLA", "Inputs": []})
    s = summarize_layers(data)
    assert s.fp32_unexpected == [gemm["Name"]] and s.dla == 1
    names_only = summarize_layers({"Layers": ["a", "b"], "Bindings": []})
    assert not names_only.detailed and names_only.total == 2


@pytest.mark.parametrize(
    "fmt,dtype",
    [
        ("Row major linear FP32", "fp32"),
        ("Float", "fp32"),
        ("Half", "fp16"),
        ("Thirty-two wide channel vectorized row major FP16 format", "fp16"),
        ("Four wide channel vectorized row major Int8 format", "int8"),
        ("Int8", "int8"),
        ("UInt8", "uint8"),
        ("BFloat16", "bf16"),
        ("Row major linear Int32", "int32"),
        ("Unknown format", None),
    ],
)
def test_format_dtype(fmt, dtype):
    assert trtb.format_dtype(fmt) == dtype


# --------------------------------------------------------------------------------------------
# Build and run through fake tensorrt/pycuda modules made of the real names


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not parsed by the fake")
    return path


ENGINE_INFO = json.dumps(
    {
        "Layers": [
            {
                "Name": "{ForeignNode[conv...relu]}",
                "LayerType": "DLA",
                "Inputs": [{"Name": "input", "Format/Datatype": "Half"}],
                "Outputs": [{"Name": "t", "Format/Datatype": "Half"}],
            },
            {
                "Name": "head.fc/Gemm_0_myl0_1",
                "LayerType": "gemm",
                "Inputs": [{"Name": "t", "Format/Datatype": "Half"}],
                "Outputs": [{"Name": "logits", "Format/Datatype": "Float"}],
            },
        ],
        "Bindings": ["input", "logits"],
    }
)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_uses_real_api_names(monkeypatch, tmp_path, onnx_file, version, precision):
    b = Behaviour(engine_info=ENGINE_INFO)
    install(monkeypatch, version, b)
    cfg = TrtBuildConfig(precision=precision, timing_cache=str(tmp_path / "t.cache"), max_batch=4)
    engine = tmp_path / "m.engine"
    manifest = onnx_to_engine(onnx_file, engine, cfg, calibration_sha256="abc")
    assert engine.read_bytes() == b"fake-plan"
    assert (tmp_path / "t.cache").read_bytes() == b"timing-cache"
    weak = version.startswith("10.")
    assert b.calls["network_flags"] == [1 << 1 if weak else 0]  # STRONGLY_TYPED: member 1
    assert "set_flag" not in b.calls  # strongly typed: no precision flags
    assert b.calls.get("clear_flag") == (["TF32"] if precision == "fp32" else None)
    assert [m.name for m in b.calls["profiling_verbosity"]] == ["DETAILED"]
    assert b.calls["profile"] == [("input", (1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32))]
    assert b.calls["inspector_format"] == ["JSON"]
    assert manifest["layers"]["total"] == 2 and manifest["layers"]["gpu"] == 1
    assert manifest["tensorrt_version"] == API["versions"][version]["__version__"]
    assert manifest["gpu_name"] == "Orin" and manifest["compute_capability"] == "8.7"
    assert manifest["label"] == precision and manifest["strongly_typed"]
    assert manifest["engine_sha256"] == hashlib.sha256(b"fake-plan").hexdigest()
    assert ("--stronglyTyped" in manifest["trtexec"]) == weak
    assert "--shapes=input:1x3x32x32" in manifest["trtexec_bench"]
    assert read_manifest(engine) == manifest


@pytest.mark.parametrize("version", VERSIONS)
def test_dla_build_per_version(monkeypatch, tmp_path, onnx_file, version):
    b = Behaviour(input_shape=(1, 3, 32, 32), num_dla_cores=2, engine_info=ENGINE_INFO)
    trt = install(monkeypatch, version, b)
    cfg = TrtBuildConfig(precision="fp16", dla_core=1)
    manifest = onnx_to_engine(onnx_file, tmp_path / "m.engine", cfg)
    weak = version.startswith("10.")
    assert b.calls["set_flag"] == (["FP16", "GPU_FALLBACK"] if weak else ["GPU_FALLBACK"])
    assert b.calls["network_flags"] == [0]  # weakly typed (10.x) / always strong (11.x)
    assert b.calls["default_device_type"] == [trt.DeviceType.DLA]
    assert b.calls["DLA_core"] == [1] and b.calls["runtime_dla_core"] == [1]
    assert "profile" not in b.calls  # static batch
    assert manifest["dla_core"] == 1 and manifest["strongly_typed"] is not weak
    assert manifest["layers"]["dla"] == 1 and manifest["layers"]["gpu"] == 1
    line = manifest["trtexec"]
    assert "--useDLACore=1" in line and ("--fp16" in line) == weak
    assert "--useDLACore=1" in manifest["trtexec_bench"]


def test_dla_refusals(monkeypatch, tmp_path, onnx_file):
    b = Behaviour(num_dla_cores=1)
    install(monkeypatch, "10.3", b)
    with pytest.raises(SwinEdgeError, match="DLA needs a static batch"):
        onnx_to_engine(onnx_file, tmp_path / "a.engine", TrtBuildConfig("fp16", dla_core=0))
    b.input_shape = (1, 3, 32, 32)
    with pytest.raises(SwinEdgeError, match="--dla 1: this device has 1 DLA core"):
        onnx_to_engine(onnx_file, tmp_path / "a.engine", TrtBuildConfig("fp16", dla_core=1))
    assert not (tmp_path / "a.engine").exists()


def test_build_failures_are_reported(monkeypatch, tmp_path, onnx_file):
    b = Behaviour(timing_cache_ok=False)
    install(monkeypatch, "10.13", b)
    cfg = TrtBuildConfig(precision="int8", timing_cache=str(tmp_path / "t.cache"))
    with pytest.raises(SwinEdgeError, match="timing cache .*t.cache' was made on another GPU"):
        onnx_to_engine(onnx_file, tmp_path / "m.engine", cfg)
    b.timing_cache_ok, b.parse_ok = True, False
    with pytest.raises(SwinEdgeError, match="cannot parse .*unsupported node"):
        onnx_to_engine(onnx_file, tmp_path / "m.engine", cfg)
    b.parse_ok, b.build_ok = True, False
    with pytest.raises(SwinEdgeError, match="failed to build"):
        onnx_to_engine(onnx_file, tmp_path / "m.engine", cfg)
    assert not (tmp_path / "m.engine").exists()
    with pytest.raises(SwinEdgeError, match="does not exist"):
        onnx_to_engine(tmp_path / "none.onnx", tmp_path / "m.engine", cfg)


def _built(monkeypatch, tmp_path, onnx_file, version="10.3", **kw):
    b = Behaviour(engine_info=ENGINE_INFO, **kw)
    install(monkeypatch, version, b)
    cfg = TrtBuildConfig(precision="int8", opt_batch=2, max_batch=4)
    if b.input_shape[0] > 0 and b.num_dla_cores:
        cfg = TrtBuildConfig(precision="fp16", dla_core=0)
    engine = tmp_path / "m.engine"
    onnx_to_engine(onnx_file, engine, cfg)
    return b, engine


def _ctx_balanced(b):
    return b.calls["ctx"].count("push") == b.calls["ctx"].count("pop") == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_runs_reports_its_batch_and_frees_everything(
    monkeypatch, tmp_path, onnx_file, version
):
    b, engine = _built(monkeypatch, tmp_path, onnx_file, version)
    with trtb.TrtRunner(engine) as r:
        assert r.batch == 2 and r.profile == (1, 2, 4)  # the opt batch of the profile
        out = r.infer_all(np.zeros((5, 3, 32, 32), np.float32))
        stats = r.benchmark(iterations=3, warmup=1)
        assert r.layer_summary().total == 2
    assert out.shape == (5, 5) and stats.batch_size == 2 and stats.p50_ms == 1.0
    assert b.calls["free"] == [2 * 3 * 32 * 32 * 4, 2 * 5 * 4]  # both device buffers
    assert r.engine is None and r.context is None and r.runtime is None
    assert _ctx_balanced(b)


def test_runner_sets_the_dla_core_from_the_manifest(monkeypatch, tmp_path, onnx_file):
    b, engine = _built(
        monkeypatch, tmp_path, onnx_file, input_shape=(1, 3, 32, 32), num_dla_cores=2
    )
    b.calls.pop("runtime_dla_core")
    with trtb.TrtRunner(engine) as r:
        assert r.batch == 1 and r.profile is None
    assert b.calls["runtime_dla_core"] == [0]
    b.num_dla_cores = 0
    with pytest.raises(SwinEdgeError, match="DLA core 0, but this device has 0"):
        trtb.TrtRunner(engine).activate()


def test_runner_refuses_a_batch_outside_the_profile(monkeypatch, tmp_path, onnx_file):
    b, engine = _built(monkeypatch, tmp_path, onnx_file)
    with pytest.raises(SwinEdgeError, match="batch 8 is outside the optimization profile .*1..4"):
        trtb.TrtRunner(engine, batch_size=8).activate()
    assert _ctx_balanced(b) and "set_input_shape" not in b.calls
    b.set_input_shape_ok = False  # TensorRT's own check, in range for us
    with pytest.raises(SwinEdgeError, match="batch 3 is outside the optimization profile"):
        trtb.TrtRunner(engine, batch_size=3).activate()


def test_runner_checks_every_false_return(monkeypatch, tmp_path, onnx_file):
    b, engine = _built(monkeypatch, tmp_path, onnx_file, set_tensor_address_ok=False)
    with pytest.raises(SwinEdgeError, match="refused the buffer for tensor 'input'"):
        trtb.TrtRunner(engine).activate()
    assert _ctx_balanced(b) and b.calls["free"]  # the buffer already made is freed
    b.set_tensor_address_ok, b.execute_ok = True, False
    with trtb.TrtRunner(engine) as r, pytest.raises(SwinEdgeError, match="execute_async_v3"):
        r.infer(np.zeros((1, 3, 32, 32), np.float32))


def test_runner_pops_the_context_when_deserialize_fails(monkeypatch, tmp_path, onnx_file):
    b, engine = _built(monkeypatch, tmp_path, onnx_file, deserialize_ok=False)
    with pytest.raises(SwinEdgeError, match="could not deserialize"):
        trtb.TrtRunner(engine).activate()
    assert _ctx_balanced(b)


def test_runner_refuses_a_changed_engine(monkeypatch, tmp_path, onnx_file):
    b, engine = _built(monkeypatch, tmp_path, onnx_file)
    engine.write_bytes(b"rebuilt by hand")
    with pytest.raises(SwinEdgeError, match="does not match its manifest"):
        trtb.TrtRunner(engine).activate()
    assert "ctx" not in b.calls  # refused before touching the GPU


@pytest.mark.parametrize("version", VERSIONS)
def test_runner_binds_and_returns_every_output(monkeypatch, tmp_path, onnx_file, version):
    feats = (("stage3", (-1, 8, 2, 2)), ("stage4", (-1, 16, 1, 1)))
    b, engine = _built(monkeypatch, tmp_path, onnx_file, version, extra_outputs=feats)
    with trtb.TrtRunner(engine) as r:
        assert r.output_names == ["logits", "stage3", "stage4"]
        outs = r.infer_all_outputs(np.zeros((3, 3, 32, 32), np.float32))
        logits = r.infer_all(np.zeros((3, 3, 32, 32), np.float32))
    assert [o.shape for o in outs] == [(3, 5), (3, 8, 2, 2), (3, 16, 1, 1)]
    assert len({float(o.flat[0]) for o in outs}) == 3  # each from its own device buffer
    np.testing.assert_array_equal(logits, outs[0])
    assert set(b.calls["set_tensor_address"]) == {"input", "logits", "stage3", "stage4"}
    assert len(b.calls["free"]) == 4 and _ctx_balanced(b)


# --------------------------------------------------------------------------------------------
# FP16 ONNX


def test_fp16_onnx_keeps_norm_and_softmax_fp32(tmp_path):
    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), tmp_path / "m.onnx", ExportConfig(dynamic_batch=True)
    ).path
    fp16 = onnx_to_fp16(fp32, tmp_path / "m.fp16.onnx")
    model = onnx.load(str(fp16))
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    assert types["input"] == onnx.TensorProto.FLOAT  # I/O stays fp32
    inits = {i.name: i.data_type for i in model.graph.initializer}
    gemm_w = [n.input[1] for n in model.graph.node if n.op_type == "Gemm"]
    assert gemm_w and all(inits[w] == onnx.TensorProto.FLOAT16 for w in gemm_w)
    prod = {o: n for n in model.graph.node for o in n.output}

    def is_fp32(name):
        if name in inits:
            return inits[name] == onnx.TensorProto.FLOAT
        p = prod[name]
        return p.op_type == "Cast" and p.attribute[0].i == onnx.TensorProto.FLOAT

    kept = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert kept and all(is_fp32(i) for n in kept for i in n.input if i)
    lns = [n for n in kept if n.op_type == "LayerNormalization"]
    assert all(w in inits for n in lns for w in n.input[1:])  # fp32 weights, no Cast round trip
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert np.abs(a[0] - b[0]).max() < 5e-2 * np.abs(a[0]).max()


# --------------------------------------------------------------------------------------------
# On a GPU (pytest -m tensorrt)


def _swin_t_sources(tmp_path):
    """Swin-T (random weights) as FP32, FP16 and tensorrt-recipe INT8 ONNX, dynamic batch."""
    from swin_edge.calibration import load_images
    from swin_edge.model import create_model
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    model = create_model("swin_tiny")
    fp32 = torch_to_onnx(model, tmp_path / "t.onnx", ExportConfig(dynamic_batch=True)).path
    images = load_images(None, model.cfg.preprocess, 32, use_cache=False).images
    return {
        "fp32": fp32,
        "fp16": onnx_to_fp16(fp32, tmp_path / "t.fp16.onnx"),
        "int8": quantize_onnx(
            fp32, tmp_path / "t.int8.onnx", images, QuantRecipe(target="tensorrt")
        ).path,
    }, images


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_build_and_run_matches_onnxruntime(tmp_path, precision):
    from swin_edge.calibration import load_images
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), tmp_path / "m.onnx", ExportConfig(dynamic_batch=True)
    ).path
    src = fp32
    if precision == "fp16":
        src = onnx_to_fp16(fp32, tmp_path / "m.fp16.onnx")
    if precision == "int8":
        images = load_images(None, CFG.preprocess, use_cache=False).images
        src = quantize_onnx(
            fp32, tmp_path / "m.int8.onnx", images, QuantRecipe(target="tensorrt")
        ).path
    engine = tmp_path / f"m.{precision}.engine"
    cfg = TrtBuildConfig(
        precision=precision, timing_cache=str(tmp_path / "t.cache"), max_batch=4, opt_batch=2
    )
    manifest = onnx_to_engine(src, engine, cfg, calibration_sha256="abc")
    assert manifest["precision"] == precision and manifest["onnx_sha256"]
    assert (tmp_path / "t.cache").stat().st_size > 0
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    with trtb.TrtRunner(engine, batch_size=2) as r:
        out = r.infer_all(x)
        stats = r.benchmark(iterations=10, warmup=2)
    assert out.shape == ref.shape and stats.p50_ms > 0 and stats.batch_size == 2
    cos = (out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref)
    assert cos > (0.9999 if precision == "fp32" else 0.99)


@pytest.mark.tensorrt
@pytest.mark.slow
def test_swin_t_engines_and_their_layer_precisions(tmp_path):
    """fp32/fp16/int8 engines from Swin-T; per-layer precisions read back through the
    engine inspector: INT8 layers only in the int8 engine, no FP32 outside LayerNorm/Softmax
    and the I/O in the fp16 and int8 engines, no reduced precision in the fp32 engine."""
    sources, images = _swin_t_sources(tmp_path)
    ref = ort.InferenceSession(str(sources["fp32"]), providers=["CPUExecutionProvider"]).run(
        None, {"input": images[:2]}
    )[0]
    for precision, src in sources.items():
        engine = tmp_path / f"t.{precision}.engine"
        cfg = TrtBuildConfig(precision=precision, timing_cache=str(tmp_path / "t.cache"))
        manifest = onnx_to_engine(src, engine, cfg)
        with trtb.TrtRunner(engine, batch_size=1) as r:
            s = r.layer_summary()
            out = r.infer_all(images[:2])
        assert s.detailed and s.total > 0 and s.dla == 0
        assert manifest["layers"] == s.to_dict()
        if precision == "fp32":
            assert set(s.precisions) <= {"fp32", "int32", "int64", "bool", "unknown"}
        else:
            assert not s.fp32_unexpected, s.fp32_unexpected[:10]
            assert ("int8" in s.precisions) == (precision == "int8")
            assert s.precisions.get("fp16", 0) > 0
        cos = (out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref)
        assert cos > (0.9999 if precision == "fp32" else 0.99), (precision, cos)


@pytest.mark.tensorrt
def test_profile_violation_and_manifest_refusal_on_a_gpu(tmp_path):
    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), tmp_path / "m.onnx", ExportConfig(dynamic_batch=True)
    ).path
    engine = tmp_path / "m.engine"
    onnx_to_engine(fp32, engine, TrtBuildConfig(precision="fp32", max_batch=4))
    with pytest.raises(SwinEdgeError, match="batch 8 is outside the optimization profile"):
        trtb.TrtRunner(engine, batch_size=8).activate()
    with trtb.TrtRunner(engine, batch_size=4) as r:  # the context was popped: usable again
        assert r.infer(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, CFG.num_classes)
    manifest = read_manifest(engine)
    path = tmp_path / "m.engine.json"
    path.write_text(json.dumps({**manifest, "tensorrt_version": "9.0.0"}))
    with pytest.raises(SwinEdgeError, match="TensorRT 9.0.0"):
        trtb.TrtRunner(engine).activate()
    path.write_text(json.dumps({**manifest, "engine_sha256": "0" * 64}))
    with pytest.raises(SwinEdgeError, match="does not match its manifest"):
        trtb.TrtRunner(engine).activate()
    path.unlink()
    with pytest.raises(SwinEdgeError, match="has no manifest"):
        trtb.TrtRunner(engine).activate()


@pytest.mark.tensorrt
def test_multi_output_engine_matches_onnxruntime_per_output(tmp_path):
    """The 4-output CBAM backbone (tests/examples): every engine output against ONNX Runtime."""
    from swin_edge.cli import main

    example = FIXTURES.parent / "examples" / "swin_cbam.py"
    fp32 = tmp_path / "b.onnx"
    assert main(["export", "--model", f"{example}:cbam_backbone", "--out", str(fp32)]) == 0
    graph = onnx.load(str(fp32)).graph
    dims = [d.dim_value or 2 for d in graph.input[0].type.tensor_type.shape.dim]
    engine = tmp_path / "b.engine"
    onnx_to_engine(fp32, engine, TrtBuildConfig(precision="fp32"))
    x = np.random.default_rng(0).standard_normal(dims, dtype=np.float32)
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {graph.input[0].name: x})
    with trtb.TrtRunner(engine) as r:
        assert r.output_names == [o.name for o in graph.output]
        outs = r.infer_all_outputs(x)
    assert len(outs) == len(ref) == 4
    for out, want in zip(outs, ref, strict=True):
        assert out.shape == want.shape
        cos = (out * want).sum() / np.linalg.norm(out) / np.linalg.norm(want)
        assert cos > 0.9999, cos
