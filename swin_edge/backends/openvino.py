"""OpenVINO runner on the CPU plugin: FP32 or Q/DQ INT8 ONNX (run as int8) and OpenVINO IR.

A second CPU runtime beside ONNX Runtime: which one is faster depends on the CPU's GEMM ISA
tier and core count, so ``build`` measures both (:mod:`swin_edge.runtime_select`). The runner
compiles for latency (one stream, ``PERFORMANCE_HINT=LATENCY``) with an explicit inference
precision: OpenVINO silently runs FP32 models in bf16 on CPUs with AMX or AVX512-BF16 unless
told otherwise, so ``f32`` is asked for by default and ``bf16`` is its own, opt-in precision.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..cpu import cpu_info
from ..errors import SwinEdgeError
from ..onnx_check import check_image_model, load_onnx
from ..utils import lazy_import
from .batched import StaticBatchInference

INSTALL_HINT = "pip install 'swin_edge[openvino]'"
PRECISIONS = ("f32", "bf16")
SUFFIXES = (".onnx", ".xml")
INT8_PRECISIONS = frozenset({"u8", "i8"})
GEMM_LAYERS = frozenset({"FullyConnected", "MatMul", "Convolution"})


def import_openvino() -> ModuleType:
    """The ``openvino`` module, or a one-line :class:`MissingDependencyError` with the fix."""
    return lazy_import("openvino", INSTALL_HINT)


def openvino_available() -> bool:
    """True when ``openvino`` imports (its CPU plugin ships with the wheel)."""
    try:
        import_openvino()
    except SwinEdgeError:
        return False
    return True


def openvino_version() -> str | None:
    try:
        return import_openvino().get_version()
    except SwinEdgeError:
        return None


def _first_line(e: Exception) -> str:
    """OpenVINO's message without its ``Exception from src/...`` location lines."""
    lines = [s.strip() for s in str(e).splitlines()]
    useful = [s for s in lines if s and not s.startswith("Exception from ")]
    return (useful or lines or [type(e).__name__])[0][:160]


class _StackT(ctypes.Structure):  # stack_t of sigaltstack(2)
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


@contextlib.contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Put back the calling thread's alternate signal stack after the block. OpenVINO 2026.4's
    CPU plugin, compiling and releasing models, leaves it pointing at memory it has freed, so
    the next signal handled on it (SIGTERM, by Python's handler) kills the process with
    SIGSEGV instead of unwinding. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _StackT()
    if libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


@dataclass(frozen=True)
class OvConfig:
    """Compile settings: ``threads=0`` lets OpenVINO use every core; ``precision`` is
    ``INFERENCE_PRECISION_HINT`` for float layers (``f32``, or ``bf16`` on CPUs with AMX-BF16
    or AVX512-BF16). INT8 layers of a Q/DQ model run in int8 either way."""

    threads: int = 0
    precision: str = "f32"  # f32 | bf16
    performance_hint: str = "LATENCY"
    num_streams: int = 1

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise SwinEdgeError(f"--threads {self.threads}: use 0 (all cores) or a count >= 1")
        if self.precision not in PRECISIONS:
            raise SwinEdgeError(
                f"OpenVINO precision {self.precision!r}: use one of {', '.join(PRECISIONS)}"
            )
        if self.performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise SwinEdgeError(
                f"OpenVINO performance hint {self.performance_hint!r}: use LATENCY or THROUGHPUT"
            )
        if self.num_streams < 1:
            raise SwinEdgeError(f"OpenVINO num_streams {self.num_streams}: must be >= 1")

    def properties(self, ov: ModuleType) -> dict[str, Any]:
        """The ``compile_model`` config for the CPU plugin."""
        props = ov.properties
        hint = props.hint
        out: dict[str, Any] = {
            hint.performance_mode: getattr(hint.PerformanceMode, self.performance_hint),
            props.num_streams: self.num_streams,
            hint.inference_precision: ov.Type.bf16 if self.precision == "bf16" else ov.Type.f32,
        }
        if self.threads:
            out[props.inference_num_threads] = self.threads
        return out


def check_precision_supported(config: OvConfig, model_path: str | Path) -> None:
    """Refuse bf16 on a CPU without hardware BF16 (OpenVINO would emulate it, slowly)."""
    if config.precision != "bf16":
        return
    info = cpu_info()
    if not info.has_bf16:
        raise SwinEdgeError(
            f"'{model_path}': OpenVINO bf16 needs a CPU with AMX-BF16 or AVX512-BF16, and this "
            f"one ({info.model}, class {info.cpu_class}) has neither; use precision f32"
        )


def read_ov_model(core: Any, path: Path) -> Any:
    """``core.read_model`` with our up-front checks and one-line errors."""
    if not path.is_file():
        raise SwinEdgeError(f"'{path}' does not exist; export or quantize first")
    if path.suffix.lower() not in SUFFIXES:
        raise SwinEdgeError(f"'{path}': OpenVINO runs .onnx or OpenVINO IR .xml files")
    if path.suffix.lower() == ".onnx":
        check_image_model(load_onnx(path), path)
    try:
        model = core.read_model(str(path))
    except Exception as e:
        raise SwinEdgeError(f"OpenVINO cannot read '{path}' ({_first_line(e)})") from None
    _check_ov_image_model(model, path)
    return model


def _check_ov_image_model(model: Any, path: Path) -> None:
    """The IR counterpart of :func:`check_image_model`: one (N, 3, H, W) input, static C/H/W."""
    expected = "expected an image model: one float32 input (N, 3, H, W)"
    if len(model.inputs) != 1:
        raise SwinEdgeError(f"'{path}' has {len(model.inputs)} inputs; {expected}")
    ps = model.inputs[0].partial_shape
    dims = [d.get_length() if d.is_static else None for d in ps] if ps.rank.is_static else None
    if dims is None or len(dims) != 4 or dims[1] != 3 or None in dims[2:]:
        raise SwinEdgeError(f"'{path}' input has shape {ps}; {expected} with static C, H, W")


class OpenvinoRunner(StaticBatchInference):
    """``with OpenvinoRunner("m.onnx") as r: logits = r.infer(batch)`` (``.xml`` IR too)."""

    def __init__(
        self,
        model_path: str | Path,
        config: OvConfig | None = None,
        extra_outputs: Sequence[str] = (),
    ) -> None:
        self.model_path = Path(model_path)
        self.config = config or OvConfig()
        self.extra_outputs = tuple(extra_outputs)  # tensor names to expose (per-layer checks)
        self.compiled = None
        self.request = None

    def __enter__(self) -> OpenvinoRunner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        with signal_stack_kept():  # releasing the last model unloads the CPU plugin
            self.request = None
            self.compiled = None

    def activate(self) -> None:
        ov = import_openvino()
        check_precision_supported(self.config, self.model_path)
        with signal_stack_kept():
            core = ov.Core()
            model = read_ov_model(core, self.model_path)
            if self.extra_outputs:
                model.add_outputs(list(self.extra_outputs))
            try:
                self.compiled = core.compile_model(model, "CPU", self.config.properties(ov))
            except Exception as e:
                raise SwinEdgeError(
                    f"OpenVINO cannot compile '{self.model_path}' for the CPU ({_first_line(e)})"
                ) from None
            self.request = self.compiled.create_infer_request()
            del core, model
        ps = self.compiled.input(0).partial_shape
        self.static_batch = ps[0].get_length() if ps[0].is_static else None
        self.input_shape = tuple(d.get_length() if d.is_static else 1 for d in ps)

    def infer_named(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output (``extra_outputs`` included) by each of its tensor names."""
        self._ensure_active()
        res = self.request.infer({0: batch})
        return {n: np.array(res[o]) for o in self.compiled.outputs for n in o.get_names()}

    def runtime_info(self) -> dict[str, Any]:
        """Compile facts for reports: threads and precision asked for, what OpenVINO chose
        (threads, execution precision) and how many GEMM/conv layers run in int8."""
        if self.compiled is None:
            self.activate()
        ov = import_openvino()
        props = ov.properties
        precision = self.compiled.get_property(props.hint.inference_precision)
        int8 = 0
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            layer = rt["layerType"].astype(str) if "layerType" in rt else ""
            prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else ""
            int8 += layer in GEMM_LAYERS and prec in INT8_PRECISIONS
        return {
            "runtime": "openvino",
            "openvino": ov.get_version(),
            "threads": self.config.threads,
            "threads_used": int(self.compiled.get_property(props.inference_num_threads)),
            "precision_hint": self.config.precision,
            "execution_precision": precision.get_type_name(),
            "int8_layers": int8,
        }

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        out = self.request.infer({0: batch}, share_inputs=True)
        return [np.array(out[o], copy=True) for o in self.compiled.outputs]

    def _ensure_active(self) -> None:
        if self.compiled is None:
            self.activate()

    def time_once(self, batch: np.ndarray) -> float:
        t0 = time.perf_counter()
        self.request.infer({0: batch}, share_inputs=True)
        return (time.perf_counter() - t0) * 1000.0


def onnx_to_openvino_ir(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert an ONNX model (FP32 or Q/DQ INT8) to OpenVINO IR ``xml_path`` + ``.bin`` beside,
    weights kept in FP32. Both files are written in a temp folder beside and renamed into
    place (the ``.bin`` first), so a failed conversion leaves no partial IR."""
    ov = import_openvino()
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    if xml_path.suffix != ".xml":
        raise SwinEdgeError(f"'{xml_path}': an OpenVINO IR path must end in .xml")
    if xml_path.resolve() == onnx_path.resolve():
        raise SwinEdgeError(f"'{xml_path}' names the input; pick another output path")
    model = read_ov_model(ov.Core(), onnx_path)
    bin_path = xml_path.with_suffix(".bin")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.ir.", dir=xml_path.parent))
    try:
        tmp_xml = tmp / xml_path.name
        try:
            ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        except Exception as e:
            raise SwinEdgeError(
                f"OpenVINO cannot convert '{onnx_path}' to IR ({_first_line(e)})"
            ) from None
        os.replace(tmp_xml.with_suffix(".bin"), bin_path)
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path
