"""Quantization recipes per deployment target."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SwinEdgeError

TARGETS = ("cpu", "tensorrt")
ENGINES = ("ort", "nncf")
CALIBRATIONS = ("minmax", "entropy", "percentile")


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
    """

    target: str = "cpu"
    engine: str = "ort"
    calibration: str = "minmax"
    percentile: float = 99.999
    histogram_bins: int = 2048
    keep_float: tuple[str, ...] = ()
    per_channel: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for name, value, allowed in (
            ("target", self.target, TARGETS),
            ("engine", self.engine, ENGINES),
            ("calibration", self.calibration, CALIBRATIONS),
        ):
            if value not in allowed:
                raise SwinEdgeError(f"--{name} {value!r}: choose one of {', '.join(allowed)}")
        if not 90.0 <= self.percentile <= 100.0:
            raise SwinEdgeError(f"--percentile {self.percentile}: use a value in [90, 100]")
        if not 256 <= self.histogram_bins <= 8192:
            raise SwinEdgeError(f"histogram_bins {self.histogram_bins}: use 256..8192")
        if self.engine == "nncf" and self.calibration == "entropy":
            raise SwinEdgeError("--calibration entropy is an ONNX Runtime method; use --engine ort")

    @property
    def symmetric_activations(self) -> bool:
        return self.target == "tensorrt"
