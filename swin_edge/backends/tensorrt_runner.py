"""pycuda runner for TensorRT engines: pinned host buffers, one stream, CUDA-event timing.

Every TensorRT call that reports failure by returning False (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) is checked and raised as a one-line error. The
CUDA context pushed on entry is popped on every exit path, and device/host buffers, execution
context, engine and runtime are released in ``__exit__`` (on Jetson the GPU shares the CPU's
memory, so nothing is left to the garbage collector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SwinEdgeError
from .tensorrt_compat import import_cuda, import_tensorrt
from .tensorrt_layers import LayerSummary, engine_info_json, summarize_layers
from .tensorrt_manifest import check_manifest, gpu_info, read_manifest
from .timing import LatencyStats


class TrtRunner:
    """``with TrtRunner("m.engine") as r: logits = r.infer(batch)``.

    ``batch_size``: the batch a dynamic-batch engine runs at (default: its profile's opt
    batch; refused outside the profile). ``dla_core``: default the one in the manifest.
    Refuses engines whose manifest does not match (hash, TensorRT release, GPU).
    """

    def __init__(
        self, engine_path: str | Path, batch_size: int | None = None, dla_core: int | None = None
    ) -> None:
        self.engine_path = Path(engine_path)
        self.batch_size = batch_size
        self.dla_core = dla_core
        self.batch = 0
        self.profile: tuple[int, int, int] | None = None  # (min, opt, max) batch
        self.manifest: dict[str, Any] = {}
        self.host: dict[str, Any] = {}
        self.device: dict[str, Any] = {}
        self._ctx = None
        self.runtime = self.engine = self.context = self.stream = None

    def __enter__(self) -> TrtRunner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def activate(self) -> None:
        trt = import_tensorrt()
        cuda = import_cuda()
        if not self.engine_path.is_file():
            raise SwinEdgeError(f"engine '{self.engine_path}' does not exist; build it first")
        self.manifest = read_manifest(self.engine_path)
        check_manifest(self.manifest, str(trt.__version__), gpu_info(), self.engine_path)
        if self.dla_core is None:
            self.dla_core = self.manifest.get("dla_core")
        self.cuda, self.trt = cuda, trt
        self._ctx = cuda.Device(0).retain_primary_context()
        self._ctx.push()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        trt, cuda = self.trt, self.cuda
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if self.dla_core is not None:
            cores = self.runtime.num_DLA_cores
            if not 0 <= self.dla_core < cores:
                raise SwinEdgeError(
                    f"engine '{self.engine_path}' runs on DLA core {self.dla_core}, but this "
                    f"device has {cores} DLA core(s)"
                )
            self.runtime.DLA_core = self.dla_core
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise SwinEdgeError(
                f"TensorRT could not deserialize '{self.engine_path}' (see the TensorRT log "
                "above); rebuild it on this device"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise SwinEdgeError(
                f"TensorRT could not create an execution context for '{self.engine_path}' "
                "(out of GPU memory?)"
            )
        self.stream = cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        )
        # every output gets a buffer: TensorRT 10+ refuses to run with any I/O tensor unbound
        self.output_names = [n for n in names if n != self.input_name]
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        static = shape[0] if shape[0] > 0 else None
        if static is None:
            lo, opt, hi = (
                tuple(d) for d in self.engine.get_tensor_profile_shape(self.input_name, 0)
            )
            self.profile = (lo[0], opt[0], hi[0])
        batch = static or self.batch_size or self.profile[1]
        if static is not None and self.batch_size not in (None, static):
            raise SwinEdgeError(
                f"engine '{self.engine_path}' has a static batch of {static}; batch "
                f"{self.batch_size} needs an engine built for it"
            )
        self._allocate(batch, shape[1:])

    def _allocate(self, batch: int, chw: tuple[int, ...]) -> None:
        trt, cuda = self.trt, self.cuda
        if self.profile and not self.profile[0] <= batch <= self.profile[2]:
            raise SwinEdgeError(self._profile_error(batch))
        if not self.context.set_input_shape(self.input_name, (batch, *chw)):
            raise SwinEdgeError(self._profile_error(batch))
        self._free_buffers()
        self.batch = batch
        for name in (self.input_name, *self.output_names):
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = cuda.pagelocked_empty(shape, dtype)
            self.device[name] = cuda.mem_alloc(self.host[name].nbytes)
            if not self.context.set_tensor_address(name, int(self.device[name])):
                raise SwinEdgeError(
                    f"TensorRT refused the buffer for tensor '{name}' of '{self.engine_path}'"
                )

    def _profile_error(self, batch: int) -> str:
        lo, opt, hi = self.profile or (None, None, None)
        rng = f"batch {lo}..{hi} (opt {opt})" if lo is not None else "its static shape"
        return (
            f"batch {batch} is outside the optimization profile of '{self.engine_path}' ({rng}); "
            f"use a batch in that range, or rebuild the engine with --max-batch {batch}"
        )

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle):
            raise SwinEdgeError(
                f"TensorRT failed to run '{self.engine_path}' (execute_async_v3 returned False; "
                "see the TensorRT log above)"
            )

    def _free_buffers(self) -> None:
        for mem in self.device.values():
            mem.free()
        for arr in self.host.values():
            base = getattr(arr, "base", None)
            if base is not None and hasattr(base, "free"):
                base.free()
        self.device, self.host = {}, {}

    def close(self) -> None:
        """Free buffers, context, engine and runtime (with the CUDA context current), then pop
        the context. Safe to call twice and after a failed ``activate``."""
        try:
            if self.stream is not None:
                self.stream.synchronize()
        finally:
            try:
                self._free_buffers()
            finally:
                self.context = self.engine = self.runtime = self.stream = None
                if self._ctx is not None:
                    self._ctx.pop()
                    self._ctx = None

    def layer_summary(self) -> LayerSummary:
        """Layer counts per device/precision, read back through the engine inspector."""
        return summarize_layers(engine_info_json(self.engine, self.trt))

    def infer_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output (engine order: the ONNX's) for a (B, 3, H, W) batch, as float32."""
        n = len(batch)
        if n > self.batch:
            parts = [self.infer_outputs(batch[i : i + self.batch]) for i in range(0, n, self.batch)]
            return [np.concatenate(p) for p in zip(*parts, strict=True)]
        if n < self.batch:
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch - n, axis=0)])
        cuda = self.cuda
        np.copyto(self.host[self.input_name], batch.astype(self.host[self.input_name].dtype))
        cuda.memcpy_htod_async(
            self.device[self.input_name], self.host[self.input_name], self.stream
        )
        self._execute()
        for name in self.output_names:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        return [np.array(self.host[name][:n], dtype=np.float32) for name in self.output_names]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (the first output) for a (B, 3, H, W) batch."""
        return self.infer_outputs(batch)[0]

    def infer_all_outputs(self, images: np.ndarray, batch_size: int = 8) -> list[np.ndarray]:
        """Every output for all ``images``, run at the engine's batch."""
        return self.infer_outputs(images)

    def infer_all(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        return self.infer_outputs(images)[0]

    def benchmark(self, iterations: int = 50, warmup: int = 10, seed: int = 0) -> LatencyStats:
        """GPU time per batch of ``self.batch`` images (reported as ``batch_size``) from CUDA
        events around ``execute_async_v3``."""
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


__all__ = ["TrtRunner"]
