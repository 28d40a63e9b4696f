import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from swin_edge.backends import tensorrt as trtb
from swin_edge.backends.tensorrt import (
    TrtBuildConfig,
    builder_flag_names,
    check_manifest,
    network_flag_names,
    onnx_to_fp16,
    profile_shapes,
    read_manifest,
    trtexec_command,
)
from swin_edge.errors import MissingDependencyError, SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import SwinTransformer

from ..conftest import MICRO as CFG


def test_network_flags_are_version_aware():
    assert network_flag_names("10.3.0", strongly_typed=True) == ["STRONGLY_TYPED"]
    assert network_flag_names("11.0.1", strongly_typed=False) == []
    assert network_flag_names("8.6.1", strongly_typed=True) == ["EXPLICIT_BATCH", "STRONGLY_TYPED"]


def test_builder_flags_strongly_typed_vs_dla():
    assert builder_flag_names(TrtBuildConfig(precision="int8"), has_qdq=True) == []
    dla = TrtBuildConfig(precision="int8", dla_core=0)
    assert not dla.strongly_typed
    assert builder_flag_names(dla, has_qdq=True) == ["FP16", "GPU_FALLBACK", "INT8"]
    assert builder_flag_names(TrtBuildConfig(precision="fp16", dla_core=1), False) == [
        "FP16",
        "GPU_FALLBACK",
    ]


def test_profile_for_dynamic_batch_only():
    cfg = TrtBuildConfig(min_batch=1, opt_batch=4, max_batch=16)
    assert profile_shapes((1, 3, 224, 224), cfg) is None
    assert profile_shapes(("batch", 3, 224, 224), cfg) == (
        (1, 3, 224, 224),
        (4, 3, 224, 224),
        (16, 3, 224, 224),
    )


def test_trtexec_command():
    cfg = TrtBuildConfig(
        precision="int8",
        workspace_mb=1024,
        optimization_level=5,
        timing_cache="t.cache",
        max_batch=8,
    )
    cmd = trtexec_command("m.onnx", "m.engine", cfg, "input", ("batch", 3, 224, 224))
    for part in (
        "--onnx=m.onnx",
        "--saveEngine=m.engine",
        "--stronglyTyped",
        "--memPoolSize=workspace:1024M",
        "--builderOptimizationLevel=5",
        "--timingCacheFile=t.cache",
        "--maxShapes=input:8x3x224x224",
    ):
        assert part in cmd
    assert "--int8" not in cmd  # strongly typed: precision comes from the Q/DQ ONNX
    dla = trtexec_command("m.onnx", "m.engine", TrtBuildConfig(precision="int8", dla_core=0))
    assert "--useDLACore=0" in dla and "--allowGPUFallback" in dla and "--int8" in dla


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(precision="int4"), "choose fp32, fp16 or int8"),
        (dict(optimization_level=7), "use 0..5"),
        (dict(min_batch=4, opt_batch=2), "min <= opt <= max"),
        (dict(precision="fp32", dla_core=0), "DLA runs FP16/INT8 only"),
    ],
)
def test_build_config_validation(kw, match):
    with pytest.raises(SwinEdgeError, match=match):
        TrtBuildConfig(**kw)


def test_manifest_mismatch_is_refused(tmp_path):
    manifest = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}
    check_manifest(manifest, "10.3.0", {"gpu_name": "Orin", "compute_capability": "8.7"}, "e")
    with pytest.raises(SwinEdgeError, match="TensorRT 10.3.0 .running 10.8.0.*rebuild"):
        check_manifest(manifest, "10.8.0", {"gpu_name": "Orin", "compute_capability": "8.7"}, "e")
    with pytest.raises(SwinEdgeError, match="compute capability 8.7 .this GPU: 8.9"):
        check_manifest(
            manifest, "10.3.0", {"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}, "e"
        )
    with pytest.raises(SwinEdgeError, match="has no manifest"):
        read_manifest(tmp_path / "x.engine")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_missing_tensorrt_names_the_fix():
    with pytest.raises(MissingDependencyError, match="swin_edge\\[tensorrt\\].*JetPack"):
        trtb.import_tensorrt()
    assert trtb.tensorrt_available() is False


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
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(fp16), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert np.abs(a[0] - b[0]).max() < 5e-2 * np.abs(a[0]).max()


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
    manifest = trtb.onnx_to_engine(src, engine, cfg, calibration_sha256="abc")
    assert manifest["precision"] == precision and manifest["onnx_sha256"]
    assert (tmp_path / "t.cache").stat().st_size > 0
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    with trtb.TrtRunner(engine, batch_size=2) as r:
        out = r.infer_all(x)
        stats = r.benchmark(iterations=10, warmup=2)
    assert out.shape == ref.shape and stats.p50_ms > 0
    cos = (out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref)
    assert cos > (0.9999 if precision == "fp32" else 0.99)
