"""ONNX -> TensorRT engine (+ manifest), and the equivalent trtexec lines.

Engines are built as *strongly typed* networks: precisions come from the ONNX itself, so INT8
comes from explicit Q/DQ (the ``tensorrt`` recipe: float16 scales, so everything between the
INT8 GEMMs runs in FP16) and FP16 from an FP16 ONNX whose LayerNorm/Softmax stay FP32
(:func:`onnx_to_fp16`). FP32 engines are built with TF32 off (``BuilderFlag.TF32`` cleared,
trtexec ``--noTF32``), so "fp32" means FP32; ``tf32=True`` builds and labels a TF32 engine.

DLA (Jetson): FP16 only, static batch only (TensorRT needs min = opt = max for DLA), GPU
fallback on. Where weak typing exists (TensorRT 10.x) the DLA network is weakly typed with the
FP16 flag, as DLA requires there; on 11.x it is strongly typed from the FP16 ONNX. INT8 on DLA
is refused: DLA does not consume Q/DQ the way the GPU does (NVIDIA's DLA tooling turns a Q/DQ
graph into a Q/DQ-free graph plus a calibration cache, which swin_edge does not produce). How
many layers landed on DLA vs GPU is read back from the engine inspector into the manifest.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError
from ..utils import write_bytes_atomic, write_json_atomic
from .tensorrt_compat import TrtCaps, import_tensorrt
from .tensorrt_layers import engine_info_json, summarize_layers
from .tensorrt_manifest import gpu_info, make_manifest, manifest_path

PRECISIONS = ("fp32", "fp16", "int8")
DLA_INT8_REFUSED = (
    "INT8 on DLA is not supported: DLA does not run Q/DQ INT8 the way the GPU does (it needs a "
    "Q/DQ-free graph plus a calibration cache, which swin_edge does not produce); use "
    "--precision fp16 with --dla (FP16 on DLA, GPU fallback), or int8 on the GPU without --dla"
)
DLA_DYNAMIC_REFUSED = (
    "DLA needs a static batch (TensorRT requires min = opt = max for DLA): export without "
    "--dynamic-batch (deploy --dla does), or drop --dla"
)


def check_dla_request(dla_core: int | None, precision: str, dynamic_batch: bool) -> None:
    """Refuse DLA requests that cannot run on DLA, before any work (for CLI commands)."""
    if dla_core is None:
        return
    if dla_core < 0:
        raise SwinEdgeError(f"--dla {dla_core}: DLA cores are numbered from 0")
    if precision == "int8":
        raise SwinEdgeError(DLA_INT8_REFUSED)
    if precision == "fp32":
        raise SwinEdgeError("DLA runs FP16 here; use --precision fp16 with --dla")
    if dynamic_batch:
        raise SwinEdgeError(DLA_DYNAMIC_REFUSED)


@dataclass(frozen=True)
class TrtBuildConfig:
    """Engine build settings; batch range for the optimization profile of a dynamic batch."""

    precision: str = "int8"
    workspace_mb: int = 2048
    optimization_level: int = 3
    timing_cache: str | None = None
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    dla_core: int | None = None
    tf32: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SwinEdgeError(f"--precision {self.precision!r}: choose fp32, fp16 or int8")
        if not 0 <= self.optimization_level <= 5:
            raise SwinEdgeError(f"--opt-level {self.optimization_level}: use 0..5")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise SwinEdgeError("batch profile needs 1 <= min <= opt <= max")
        if self.workspace_mb < 64:
            raise SwinEdgeError(f"--workspace {self.workspace_mb} MiB: use at least 64")
        if self.tf32 and self.precision != "fp32":
            raise SwinEdgeError("tf32 applies to fp32 engines only")
        check_dla_request(self.dla_core, self.precision, dynamic_batch=False)

    @property
    def label(self) -> str:
        """What the engine computes in: 'tf32' for an fp32 engine with TF32 allowed."""
        return "tf32" if self.precision == "fp32" and self.tf32 else self.precision


def strongly_typed(cfg: TrtBuildConfig, caps: TrtCaps) -> bool:
    """Weakly typed only for DLA where weak typing exists (TensorRT 10.x)."""
    return cfg.dla_core is None or not caps.weak_typing


def network_flag_names(caps: TrtCaps, strongly: bool) -> list[str]:
    """NetworkDefinitionCreationFlag names. EXPLICIT_BATCH is implied from TensorRT 10;
    STRONGLY_TYPED is needed where weak typing exists and a deprecated no-op where it does not."""
    if strongly and caps.weak_typing and "STRONGLY_TYPED" in caps.network_flags:
        return ["STRONGLY_TYPED"]
    return []


def _need(caps: TrtCaps, names: list[str]) -> list[str]:
    missing = [n for n in names if n not in caps.builder_flags]
    if missing:
        raise SwinEdgeError(
            f"TensorRT {caps.version} has no BuilderFlag {', '.join(missing)}; "
            "this build needs a TensorRT that supports it"
        )
    return names


def builder_flag_names(cfg: TrtBuildConfig, caps: TrtCaps) -> list[str]:
    """BuilderFlag names to set. Strongly typed networks take no precision flags."""
    if cfg.dla_core is None:
        return []
    return _need(caps, ["FP16", "GPU_FALLBACK"] if caps.weak_typing else ["GPU_FALLBACK"])


def cleared_builder_flag_names(cfg: TrtBuildConfig, caps: TrtCaps) -> list[str]:
    """BuilderFlag names to clear: TF32 (on by default) for a true FP32 engine."""
    if cfg.precision == "fp32" and not cfg.tf32 and caps.tf32_flag:
        return ["TF32"]
    return []


def profile_shapes(
    input_shape: tuple[int | str, ...], cfg: TrtBuildConfig
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(min, opt, max) shapes when the batch is dynamic, else None (static engine)."""
    if isinstance(input_shape[0], int) and input_shape[0] > 0:
        return None
    if cfg.dla_core is not None:
        raise SwinEdgeError(DLA_DYNAMIC_REFUSED)
    rest = tuple(int(d) for d in input_shape[1:])
    return (cfg.min_batch, *rest), (cfg.opt_batch, *rest), (cfg.max_batch, *rest)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def trtexec_command(
    onnx_path: str,
    engine_path: str,
    cfg: TrtBuildConfig,
    input_name: str = "input",
    input_shape: tuple[int | str, ...] = (1, 3, 224, 224),
    weak_typing: bool = True,
    export_layer_info: str | None = None,
) -> str:
    """The equivalent ``trtexec`` build line, valid for a trtexec with (10.x) or without
    (11.x: ``--fp16``/``--int8`` removed) weak typing. A dynamic batch is built with
    ``--min/opt/maxShapes`` and timed at ``--shapes`` = the opt batch."""
    args = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--memPoolSize=workspace:{cfg.workspace_mb}M",
        f"--builderOptimizationLevel={cfg.optimization_level}",
        "--profilingVerbosity=detailed",
    ]
    weak = cfg.dla_core is not None and weak_typing
    if weak:
        args.append("--fp16")
    elif weak_typing:  # 10.x; 11.x is always strongly typed (--stronglyTyped: a no-op there)
        args.append("--stronglyTyped")
    if cfg.dla_core is not None:
        args += [f"--useDLACore={cfg.dla_core}", "--allowGPUFallback"]
    if cfg.precision == "fp32" and not cfg.tf32:
        args.append("--noTF32")
    if cfg.timing_cache:
        args.append(f"--timingCacheFile={cfg.timing_cache}")
    shapes = profile_shapes(input_shape, cfg)
    if shapes:
        for key, shape in zip(("min", "opt", "max"), shapes, strict=True):
            args.append(f"--{key}Shapes={input_name}:{_dims(shape)}")
        args.append(f"--shapes={input_name}:{_dims(shapes[1])}")
    if export_layer_info:
        args.append(f"--exportLayerInfo={export_layer_info}")
    return " ".join(shlex.quote(a) for a in args)


def trtexec_bench_command(
    engine_path: str,
    cfg: TrtBuildConfig,
    input_name: str = "input",
    input_shape: tuple[int | str, ...] = (1, 3, 224, 224),
    batch: int | None = None,
    export_layer_info: str | None = None,
) -> str:
    """trtexec line that benchmarks a built engine: the DLA core it was built for, and the
    batch it is timed at (``--shapes``, default the opt batch) for a dynamic-batch engine."""
    args = [
        "trtexec",
        f"--loadEngine={engine_path}",
        "--warmUp=500",
        "--iterations=200",
        "--avgRuns=50",
    ]
    if cfg.dla_core is not None:
        args.append(f"--useDLACore={cfg.dla_core}")
    shapes = profile_shapes(input_shape, cfg)
    if shapes:
        b = batch or shapes[1][0]
        if not shapes[0][0] <= b <= shapes[2][0]:
            raise SwinEdgeError(
                f"batch {b} is outside the engine's profile ({shapes[0][0]}..{shapes[2][0]})"
            )
        args.append(f"--shapes={input_name}:{_dims((b, *shapes[1][1:]))}")
    if export_layer_info:
        args += ["--dumpLayerInfo", f"--exportLayerInfo={export_layer_info}"]
    return " ".join(shlex.quote(a) for a in args)


# ---------------------------------------------------------------------------------------------
# FP16 ONNX for strongly typed FP16 engines


def onnx_to_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """FP32 ONNX -> FP16 ONNX with LayerNorm/Softmax (and the I/O) kept in FP32, their weights
    exactly as in the FP32 model (see :mod:`swin_edge.quantize.fp16`)."""
    import onnx

    from ..quantize.fp16 import float_model_to_fp16
    from ..utils import atomic_path

    fp16 = float_model_to_fp16(onnx.load(str(fp32_path)))
    with atomic_path(out_path) as tmp:
        onnx.save(fp16, str(tmp))
    return Path(out_path)


# ---------------------------------------------------------------------------------------------
# Build


def _layer_summary(trt: Any, logger: Any, plan: bytes, dla_core: int | None) -> dict | None:
    """Deserialize the plan and read its layers back through the engine inspector."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return None
    try:
        return summarize_layers(engine_info_json(engine, trt)).to_dict()
    finally:
        del engine, runtime


def onnx_to_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    cfg: TrtBuildConfig,
    calibration_sha256: str | None = None,
) -> dict[str, Any]:
    """Build and serialize an engine (atomically) plus its manifest; returns the manifest."""
    trt = import_tensorrt()
    caps = TrtCaps.from_module(trt)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise SwinEdgeError(f"'{onnx_path}' does not exist; pass the ONNX to build from")
    gpu = gpu_info()
    strongly = strongly_typed(cfg, caps)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flag_names(caps, strongly):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SwinEdgeError(f"TensorRT cannot parse '{onnx_path}': {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer types/precisions
    for name in builder_flag_names(cfg, caps):
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in cleared_builder_flag_names(cfg, caps):
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if cfg.dla_core is not None:
        cores = builder.num_DLA_cores
        if cfg.dla_core >= cores:
            raise SwinEdgeError(
                f"--dla {cfg.dla_core}: this device has {cores} DLA core(s)"
                + ("" if cores else "; DLA exists on Jetson AGX/NX Orin and Xavier only")
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
    cache = None
    if cfg.timing_cache:
        cache_path = Path(cfg.timing_cache)
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            raise SwinEdgeError(
                f"timing cache '{cache_path}' was made on another GPU or TensorRT; delete it "
                "(a new one is written by the next build)"
            )
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    symbolic = tuple(d if d >= 0 else "batch" for d in shape)
    shapes = profile_shapes(symbolic, cfg)
    if shapes:
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, *shapes)
        if config.add_optimization_profile(profile) < 0:
            raise SwinEdgeError(f"TensorRT refused the batch profile {shapes} for '{inp.name}'")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SwinEdgeError(
            f"TensorRT failed to build an engine from '{onnx_path}' (see the TensorRT log above)"
        )
    plan = bytes(serialized)
    seconds = time.perf_counter() - t0
    layers = _layer_summary(trt, logger, plan, cfg.dla_core)
    write_bytes_atomic(engine_path, plan)
    if cache is not None:
        write_bytes_atomic(cfg.timing_cache, bytes(config.get_timing_cache().serialize()))
    manifest = make_manifest(
        onnx_path=onnx_path,
        engine_path=engine_path,
        cfg=cfg,
        trt_version=str(trt.__version__),
        gpu=gpu,
        input_shape=list(shape),
        calibration_sha256=calibration_sha256,
        build_seconds=seconds,
        strongly_typed=strongly,
        layers=layers,
    )
    manifest["trtexec"] = trtexec_command(
        str(onnx_path), str(engine_path), cfg, inp.name, symbolic, caps.weak_typing
    )
    manifest["trtexec_bench"] = trtexec_bench_command(str(engine_path), cfg, inp.name, symbolic)
    write_json_atomic(manifest_path(engine_path), manifest)
    return manifest


__all__ = [
    "DLA_DYNAMIC_REFUSED",
    "DLA_INT8_REFUSED",
    "PRECISIONS",
    "TrtBuildConfig",
    "builder_flag_names",
    "check_dla_request",
    "cleared_builder_flag_names",
    "network_flag_names",
    "onnx_to_engine",
    "onnx_to_fp16",
    "profile_shapes",
    "strongly_typed",
    "trtexec_bench_command",
    "trtexec_command",
]
