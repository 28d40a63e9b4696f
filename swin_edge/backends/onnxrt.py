"""ONNX Runtime runner (FP32 and Q/DQ INT8 models) on the CPU execution provider."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx

from ..cpu import cpu_info
from ..errors import SwinEdgeError
from ..onnx_check import check_image_model
from ..utils import lazy_import
from .batched import StaticBatchInference

# ONNX Runtime's session entry for exact int8 GEMMs on x86 CPUs whose fast u8s8 kernels saturate:
# it rewrites int8 weights as uint8 (w + 128, zero point + 128: the same products) so that the
# u8u8 kernels, which widen to 16 bits before multiplying, run instead.
EXACT_U8S8_ENTRY = "session.x64quantprecision"


@lru_cache(maxsize=1)
def u8s8_saturates_here() -> bool:
    """:attr:`~swin_edge.cpu.CpuInfo.u8s8_saturates` for this machine (read once)."""
    return cpu_info().u8s8_saturates


@dataclass(frozen=True)
class OrtConfig:
    """Session settings; ``threads=0`` lets ONNX Runtime use every physical core.

    ``lower_int8``: run uint8 Q/DQ Gemms as MatMulIntegerToFloat (see
    :mod:`~swin_edge.backends.onnxrt_lowering`); False runs the file exactly as written.
    ``exact_u8s8``: set :data:`EXACT_U8S8_ENTRY`; ``None`` (default) sets it exactly where the
    CPU's fast u8s8 kernels saturate (x86 without VNNI or AMX) and the model's GEMM inputs are
    8-bit (a ``--gemm-input-bits 7`` model never clamps), so an INT8 model computes the same
    products on every CPU. Elsewhere it only costs speed: on a VNNI CPU it swaps the exact VNNI
    kernels for u8u8 ones (Swin-T, 1 thread, AMD EPYC AVX-512 VNNI: 80 vs 46 ms).
    """

    threads: int = 0
    optimization: str = "all"  # all | extended | basic | disable
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    lower_int8: bool = True
    exact_u8s8: bool | None = None

    def exact_u8s8_for(self, model: onnx.ModelProto | None) -> bool:
        """Whether a session of ``model`` gets :data:`EXACT_U8S8_ENTRY` on this machine (by
        default: a quantized model with 8-bit GEMM inputs on a CPU whose u8s8 kernels clamp;
        an unreadable model counts as one)."""
        if self.exact_u8s8 is not None:
            return self.exact_u8s8
        if not u8s8_saturates_here():
            return False
        if model is None:
            return True
        from ..quantize.u8s8_safe import gemm_input_bits

        quantized = any(n.op_type == "DequantizeLinear" for n in model.graph.node)
        return quantized and gemm_input_bits(model) == 8


class OnnxrtRunner(StaticBatchInference):
    """``with OnnxrtRunner("m.onnx") as r: logits = r.infer(batch)``."""

    def __init__(self, model_path: str | Path, config: OrtConfig | None = None) -> None:
        self.model_path = Path(model_path)
        self.config = config or OrtConfig()
        self.session = None
        self.lowered_gemms = 0
        self.exact_u8s8 = False

    def __enter__(self) -> OnnxrtRunner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.session = None

    def activate(self) -> None:
        ort = lazy_import("onnxruntime", "pip install onnxruntime")
        if not self.model_path.is_file():
            raise SwinEdgeError(f"'{self.model_path}' does not exist; export or quantize first")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.config.threads
        so.log_severity_level = 3
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        so.graph_optimization_level = levels[self.config.optimization]
        source = None
        disabled: list[str] = []
        model = self._read_model()
        self.exact_u8s8 = self.config.exact_u8s8_for(model)
        if self.exact_u8s8:
            so.add_session_config_entry(EXACT_U8S8_ENTRY, "1")
        if model is not None:  # an unreadable file is left for ONNX Runtime to report
            check_image_model(model, self.model_path)
            from ..quantize.fp16 import ort_disabled_optimizers  # float16 Q/DQ scales

            disabled = ort_disabled_optimizers(model)
            source = self._rewritten_bytes(model)
        try:
            self.session = ort.InferenceSession(
                source or str(self.model_path),
                so,
                providers=list(self.config.providers),
                disabled_optimizers=disabled,
            )
        except Exception as e:
            raise SwinEdgeError(
                f"ONNX Runtime cannot load '{self.model_path}' ({str(e).splitlines()[0][:160]})"
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in inp.shape)

    def runtime_info(self) -> dict[str, int | bool]:
        """Session facts for reports: threads asked for, Q/DQ Gemms lowered, exact u8s8."""
        return {
            "threads": self.config.threads,
            "lower_int8": self.config.lower_int8,
            "lowered_gemms": self.lowered_gemms,
            "exact_u8s8": self.exact_u8s8,
        }

    def _read_model(self) -> onnx.ModelProto | None:
        """The ONNX graph without external weights, or None when it cannot be parsed."""
        try:
            return onnx.load(str(self.model_path), load_external_data=False)
        except Exception:
            return None

    def _rewritten_bytes(self, model: onnx.ModelProto) -> bytes | None:
        """``model`` (modified) with its Q/DQ Gemms lowered (``lower_int8``) and, in exact u8s8
        mode, private weight DQs (:func:`~.onnxrt_u8s8.private_weight_dqs`); None when
        neither changed anything (ONNX Runtime then reads the file)."""
        from .onnxrt_lowering import has_int8_gemms, lower_int8_gemms
        from .onnxrt_u8s8 import private_weight_dqs

        lower = self.config.lower_int8 and has_int8_gemms(model)
        if not lower and not self.exact_u8s8:
            return None
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            onnx.load_external_data_for_model(model, str(self.model_path.parent))
        self.lowered_gemms = lower_int8_gemms(model) if lower else 0
        private = private_weight_dqs(model) if self.exact_u8s8 else 0
        return model.SerializeToString() if self.lowered_gemms or private else None

    def _ensure_active(self) -> None:
        if self.session is None:
            self.activate()

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: batch})

    def time_once(self, batch: np.ndarray) -> float:
        t0 = time.perf_counter()
        self.session.run(None, {self.input_name: batch})
        return (time.perf_counter() - t0) * 1000.0
