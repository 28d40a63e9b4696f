"""Quantization recipes per deployment target."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SwinEdgeError

TARGETS = ("cpu", "tensorrt")
ENGINES = ("ort", "nncf")
CALIBRATIONS = ("minmax", "entropy", "percentile")
SCALE_DTYPES = ("auto", "fp16", "fp32")


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantize.

    ``target='tensorrt'``: symmetric int8 activations (zero point 0), per-channel int8 weights,
    Q/DQ on the inputs of every GEMM/MatMul/Conv and of residual adds, float biases; TensorRT
    places the rest itself. ``target='cpu'``: uint8 activations, per-channel int8 weights and
    int32 biases (ONNX Runtime's U8S8 kernels and QGemm fusion), each activation quantized right
    where it is produced so window shifts/partitions and the qkv split move uint8.
    Both keep LayerNorm, Softmax, GELU, the attention bias/mask add and residual sums in float.
    ``histogram_bins``: histogram size for entropy/percentile calibration.
    ``keep_float``: node-name patterns (e.g. ``fc2``, ``downsample``) left unquantized.
    ``gemm_input_bits``: 7 puts the uint8 inputs of the weight GEMMs on 128 levels (``cpu``
    only; :mod:`~swin_edge.quantize.u8s8_safe`): x86 CPUs without VNNI then run the model
    exactly with their fast u8s8 kernels, in any runtime, for about 2-5 dB of SQNR.
    ``scale_dtype``: Q/DQ scale type. ``auto`` is ``fp16`` for ``tensorrt`` (an INT8 + FP16
    model: DequantizeLinear outputs FP16, LayerNorm/Softmax kept FP32; see
    :mod:`~swin_edge.quantize.fp16`) and ``fp32`` for ``cpu``; ``fp32`` keeps float32 scales.
    """

    target: str = "cpu"
    engine: str = "ort"
    calibration: str = "minmax"
    percentile: float = 99.999
    histogram_bins: int = 2048
    keep_float: tuple[str, ...] = ()
    per_channel: bool = True
    scale_dtype: str = "auto"
    gemm_input_bits: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for name, value, allowed in (
            ("target", self.target, TARGETS),
            ("engine", self.engine, ENGINES),
            ("calibration", self.calibration, CALIBRATIONS),
            ("scale-dtype", self.scale_dtype, SCALE_DTYPES),
        ):
            if value not in allowed:
                raise SwinEdgeError(f"--{name} {value!r}: choose one of {', '.join(allowed)}")
        if not 90.0 <= self.percentile <= 100.0:
            raise SwinEdgeError(f"--percentile {self.percentile}: use a value in [90, 100]")
        if not 256 <= self.histogram_bins <= 8192:
            raise SwinEdgeError(f"histogram_bins {self.histogram_bins}: use 256..8192")
        if self.gemm_input_bits not in (7, 8):
            raise SwinEdgeError(f"--gemm-input-bits {self.gemm_input_bits}: choose 8 or 7")
        if self.gemm_input_bits == 7 and self.target != "cpu":
            raise SwinEdgeError(
                "--gemm-input-bits 7 is for --target cpu (uint8 activations); TensorRT's int8 "
                "kernels do not clamp"
            )
        if self.target == "cpu" and self.scale_dtype == "fp16":
            raise SwinEdgeError("--scale-dtype fp16 is for --target tensorrt; cpu uses fp32")
        if self.engine == "nncf" and self.calibration == "entropy":
            raise SwinEdgeError("--calibration entropy is an ONNX Runtime method; use --engine ort")

    @property
    def fp16_scales(self) -> bool:
        """True when the Q/DQ model gets float16 scales (an INT8 + FP16 model)."""
        auto = self.scale_dtype == "auto" and self.target == "tensorrt"
        return self.scale_dtype == "fp16" or auto

    @property
    def symmetric_activations(self) -> bool:
        return self.target == "tensorrt"
