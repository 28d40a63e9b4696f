"""TensorRT engines from (Q/DQ) ONNX, a pycuda runner, engine manifests and trtexec lines.

Engines are built as *strongly typed* networks (TensorRT >= 10): precisions come from the ONNX
itself, so INT8 comes from explicit Q/DQ (no implicit calibrator: deprecated in 10.1, removed in
11) and FP16 from an FP16 ONNX whose LayerNorm/Softmax stay FP32 (:func:`onnx_to_fp16`). DLA
(Jetson) needs builder precision flags, so DLA builds use a weakly typed network with FP16 (and
INT8 for Q/DQ models) plus GPU fallback.

Engines are tied to the GPU and TensorRT version that built them; every engine gets a JSON
manifest beside it, and loading one whose manifest does not match the running TensorRT/GPU is
refused. ``tensorrt`` and ``pycuda`` are imported lazily (optional extra).
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, SwinEdgeError
from ..utils import atomic_path, lazy_import, sha256_file, write_bytes_atomic, write_json_atomic
from .timing import LatencyStats

PRECISIONS = ("fp32", "fp16", "int8")
INSTALL_HINT = (
    "install the optional extra: pip install 'swin_edge[tensorrt]' (desktop GPU), or on Jetson "
    "use JetPack's TensorRT (apt install python3-libnvinfer) and pip install pycuda"
)
FP32_OPS = ("LayerNormalization", "Softmax")


def import_tensorrt():
    trt = lazy_import("tensorrt", INSTALL_HINT)
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} found; strongly typed Q/DQ engines need TensorRT >= 10"
        )
    return trt


def tensorrt_available() -> bool:
    """True when TensorRT >= 10, pycuda and a CUDA GPU are usable."""
    try:
        import_tensorrt()
        cuda = lazy_import("pycuda.driver", INSTALL_HINT)
        cuda.init()
        return cuda.Device.count() > 0
    except Exception:
        return False


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

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SwinEdgeError(f"--precision {self.precision!r}: choose fp32, fp16 or int8")
        if not 0 <= self.optimization_level <= 5:
            raise SwinEdgeError(f"--opt-level {self.optimization_level}: use 0..5")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise SwinEdgeError("batch profile needs 1 <= min <= opt <= max")
        if self.workspace_mb < 64:
            raise SwinEdgeError(f"--workspace {self.workspace_mb} MiB: use at least 64")
        if self.dla_core is not None and self.precision == "fp32":
            raise SwinEdgeError("DLA runs FP16/INT8 only; use --precision fp16 or int8 with --dla")

    @property
    def strongly_typed(self) -> bool:
        return self.dla_core is None


def network_flag_names(trt_version: str, strongly_typed: bool) -> list[str]:
    """NetworkDefinitionCreationFlag names for this TensorRT version.

    EXPLICIT_BATCH is implied (and deprecated) from TensorRT 10; it was required before.
    """
    major = int(trt_version.split(".")[0])
    flags = [] if major >= 10 else ["EXPLICIT_BATCH"]
    if strongly_typed:
        flags.append("STRONGLY_TYPED")
    return flags


def builder_flag_names(cfg: TrtBuildConfig, has_qdq: bool) -> list[str]:
    """BuilderFlag names. Strongly typed networks take none (types come from the ONNX)."""
    if cfg.strongly_typed:
        return []
    flags = ["FP16", "GPU_FALLBACK"]
    if cfg.precision == "int8" or has_qdq:
        flags.append("INT8")
    return flags


def profile_shapes(
    input_shape: tuple[int | str, ...], cfg: TrtBuildConfig
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(min, opt, max) shapes when the batch is dynamic, else None (static engine)."""
    if isinstance(input_shape[0], int) and input_shape[0] > 0:
        return None
    rest = tuple(int(d) for d in input_shape[1:])
    return (cfg.min_batch, *rest), (cfg.opt_batch, *rest), (cfg.max_batch, *rest)


def trtexec_command(
    onnx_path: str,
    engine_path: str,
    cfg: TrtBuildConfig,
    input_name: str = "input",
    input_shape: tuple[int | str, ...] = (1, 3, 224, 224),
) -> str:
    """The equivalent ``trtexec`` command line."""
    args = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--memPoolSize=workspace:{cfg.workspace_mb}M",
        f"--builderOptimizationLevel={cfg.optimization_level}",
    ]
    if cfg.strongly_typed:
        args.append("--stronglyTyped")
    else:
        args += ["--fp16", f"--useDLACore={cfg.dla_core}", "--allowGPUFallback"]
        if cfg.precision == "int8":
            args.append("--int8")
    if cfg.timing_cache:
        args.append(f"--timingCacheFile={cfg.timing_cache}")
    shapes = profile_shapes(input_shape, cfg)
    if shapes:
        for key, shape in zip(("min", "opt", "max"), shapes, strict=True):
            args.append(f"--{key}Shapes={input_name}:{'x'.join(map(str, shape))}")
    return " ".join(shlex.quote(a) for a in args)


# ---------------------------------------------------------------------------------------------
# FP16 ONNX for strongly typed FP16 engines


def onnx_to_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """FP32 ONNX -> FP16 ONNX with LayerNorm/Softmax (and the I/O) kept in FP32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(fp32_path))
    with warnings.catch_warnings():  # it warns for every weight below fp16's range
        warnings.simplefilter("ignore", UserWarning)
        fp16 = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(FP32_OPS)
        )
    with atomic_path(out_path) as tmp:
        onnx.save(fp16, str(tmp))
    return Path(out_path)


# ---------------------------------------------------------------------------------------------
# Manifest


def gpu_info() -> dict[str, Any]:
    cuda = lazy_import("pycuda.driver", INSTALL_HINT)
    cuda.init()
    if cuda.Device.count() == 0:
        raise SwinEdgeError("no CUDA GPU found; TensorRT engines need an NVIDIA GPU")
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"gpu_name": dev.name(), "compute_capability": f"{major}.{minor}"}


def make_manifest(
    *,
    onnx_path: str | Path,
    engine_path: str | Path,
    cfg: TrtBuildConfig,
    trt_version: str,
    gpu: dict[str, Any],
    input_shape: list,
    calibration_sha256: str | None,
    build_seconds: float,
) -> dict[str, Any]:
    return {
        "format": "swin_edge.engine/1",
        "engine": Path(engine_path).name,
        "engine_sha256": sha256_file(engine_path),
        "tensorrt_version": trt_version,
        "gpu_name": gpu["gpu_name"],
        "compute_capability": gpu["compute_capability"],
        "precision": cfg.precision,
        "strongly_typed": cfg.strongly_typed,
        "input_shape": input_shape,
        "onnx": Path(onnx_path).name,
        "onnx_sha256": sha256_file(onnx_path),
        "calibration_sha256": calibration_sha256,
        "build": asdict(cfg),
        "build_seconds": round(build_seconds, 1),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def manifest_path(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + ".json")


def check_manifest(
    manifest: dict[str, Any], trt_version: str, gpu: dict[str, Any], engine_path: str | Path
) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU."""
    problems = []
    if manifest.get("tensorrt_version") != trt_version:
        problems.append(f"TensorRT {manifest.get('tensorrt_version')} (running {trt_version})")
    if manifest.get("compute_capability") != gpu["compute_capability"]:
        problems.append(
            f"compute capability {manifest.get('compute_capability')} "
            f"(this GPU: {gpu['compute_capability']})"
        )
    if manifest.get("gpu_name") != gpu["gpu_name"]:
        problems.append(f"GPU '{manifest.get('gpu_name')}' (this GPU: '{gpu['gpu_name']}')")
    if problems:
        raise SwinEdgeError(
            f"engine '{engine_path}' was built for "
            + ", ".join(problems)
            + "; engines are not portable: rebuild it on this device from the ONNX "
            "(python -m swin_edge build, or the bundle's build_engine.sh)"
        )


def read_manifest(engine_path: str | Path) -> dict[str, Any]:
    path = manifest_path(engine_path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SwinEdgeError(
            f"engine '{engine_path}' has no manifest '{path.name}'; rebuild "
            "it with swin_edge so its TensorRT/GPU can be checked"
        ) from None
    except json.JSONDecodeError:
        raise SwinEdgeError(f"manifest '{path}' is not valid JSON; rebuild the engine") from None


# ---------------------------------------------------------------------------------------------
# Build


def onnx_to_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    cfg: TrtBuildConfig,
    calibration_sha256: str | None = None,
) -> dict[str, Any]:
    """Build and serialize an engine (atomically) plus its manifest; returns the manifest."""
    trt = import_tensorrt()
    gpu = gpu_info()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flag_names(trt.__version__, cfg.strongly_typed):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SwinEdgeError(f"TensorRT cannot parse '{onnx_path}': {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    config.builder_optimization_level = cfg.optimization_level
    has_qdq = any(
        network.get_layer(i).type == trt.LayerType.QUANTIZE for i in range(network.num_layers)
    )
    for name in builder_flag_names(cfg, has_qdq):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if cfg.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise SwinEdgeError("--dla given but this device has no DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
    cache = None
    if cfg.timing_cache:
        cache_path = Path(cfg.timing_cache)
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    shapes = profile_shapes(tuple(d if d >= 0 else "batch" for d in shape), cfg)
    if shapes:
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, *shapes)
        config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SwinEdgeError(
            f"TensorRT failed to build an engine from '{onnx_path}' (see the TensorRT log above)"
        )
    write_bytes_atomic(engine_path, bytes(serialized))
    if cache is not None:
        write_bytes_atomic(cfg.timing_cache, bytes(config.get_timing_cache().serialize()))
    manifest = make_manifest(
        onnx_path=onnx_path,
        engine_path=engine_path,
        cfg=cfg,
        trt_version=trt.__version__,
        gpu=gpu,
        input_shape=list(shape),
        calibration_sha256=calibration_sha256,
        build_seconds=time.perf_counter() - t0,
    )
    manifest["trtexec"] = trtexec_command(
        str(onnx_path),
        str(engine_path),
        cfg,
        inp.name,
        tuple(d if d >= 0 else "batch" for d in shape),
    )
    write_json_atomic(manifest_path(engine_path), manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# Runner


class TrtRunner:
    """``with TrtRunner("m.engine") as r: logits = r.infer(batch)``; pinned host buffers, one
    CUDA stream, CUDA-event timing. Refuses engines whose manifest does not match."""

    def __init__(self, engine_path: str | Path, batch_size: int | None = None) -> None:
        self.engine_path = Path(engine_path)
        self.batch_size = batch_size
        self._ctx = None

    def __enter__(self) -> TrtRunner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None

    def activate(self) -> None:
        trt = import_tensorrt()
        cuda = lazy_import("pycuda.driver", INSTALL_HINT)
        if not self.engine_path.is_file():
            raise SwinEdgeError(f"engine '{self.engine_path}' does not exist; build it first")
        check_manifest(
            read_manifest(self.engine_path), trt.__version__, gpu_info(), self.engine_path
        )
        self._ctx = cuda.Device(0).retain_primary_context()
        self._ctx.push()
        self.cuda, self.trt = cuda, trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise SwinEdgeError(f"TensorRT could not deserialize '{self.engine_path}'")
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        )
        self.output_name = next(n for n in names if n != self.input_name)
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.static_batch = shape[0] if shape[0] > 0 else None
        batch = (
            self.static_batch
            or self.batch_size
            or self.engine.get_tensor_profile_shape(self.input_name, 0)[1][0]
        )
        self._allocate(batch, shape[1:])

    def _allocate(self, batch: int, chw: tuple[int, ...]) -> None:
        trt, cuda = self.trt, self.cuda
        self.batch = batch
        self.context.set_input_shape(self.input_name, (batch, *chw))
        self.host, self.device = {}, {}
        for name in (self.input_name, self.output_name):
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = cuda.pagelocked_empty(shape, dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, int(self.device[name]))

    def _execute(self) -> None:
        self.context.execute_async_v3(self.stream.handle)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n > self.batch:
            return np.concatenate(
                [self.infer(batch[i : i + self.batch]) for i in range(0, n, self.batch)]
            )
        if n < self.batch:
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch - n, axis=0)])
        cuda = self.cuda
        np.copyto(self.host[self.input_name], batch.astype(self.host[self.input_name].dtype))
        cuda.memcpy_htod_async(
            self.device[self.input_name], self.host[self.input_name], self.stream
        )
        self._execute()
        cuda.memcpy_dtoh_async(
            self.host[self.output_name], self.device[self.output_name], self.stream
        )
        self.stream.synchronize()
        return np.array(self.host[self.output_name][:n], dtype=np.float32)

    def infer_all(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        return np.concatenate(
            [self.infer(images[i : i + self.batch]) for i in range(0, len(images), self.batch)]
        )

    def benchmark(self, iterations: int = 50, warmup: int = 10, seed: int = 0) -> LatencyStats:
        """GPU time per batch from CUDA events around ``execute_async_v3``."""
        x = np.random.default_rng(seed).standard_normal(self.host[self.input_name].shape)
        self.infer(x.astype(np.float32))
        start, end = self.cuda.Event(), self.cuda.Event()
        samples = []
        for i in range(warmup + iterations):
            start.record(self.stream)
            self._execute()
            end.record(self.stream)
            end.synchronize()
            if i >= warmup:
                samples.append(start.time_till(end))
        return LatencyStats.from_samples(samples, self.batch, warmup)
