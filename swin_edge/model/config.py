"""Model and preprocessing configuration, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import SwinEdgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """The model's own preprocessing: resize shorter side, center crop, normalize."""

    img_size: int = 224
    crop_pct: float = 0.9
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    grayscale_to_rgb: bool = True

    @property
    def resize_size(self) -> int:
        """Shorter side after resize (timm's rule: floor(img_size / crop_pct))."""
        return int(self.img_size / self.crop_pct)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SwinConfig:
    """Swin Transformer v1 architecture; ``validate`` raises a one-line error for bad shapes."""

    img_size: int = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    crop_pct: float = 0.9
    name: str = "swin_tiny_patch4_window7_224"
    preprocess: PreprocessConfig = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        if self.preprocess is None:
            object.__setattr__(
                self, "preprocess", PreprocessConfig(img_size=self.img_size, crop_pct=self.crop_pct)
            )
        elif isinstance(self.preprocess, dict):
            pp = dict(self.preprocess)
            pp["mean"], pp["std"] = tuple(pp["mean"]), tuple(pp["std"])
            object.__setattr__(self, "preprocess", PreprocessConfig(**pp))
        self.validate()

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_resolutions(self) -> list[int]:
        base = self.img_size // self.patch_size
        return [base // (2**i) for i in range(self.num_stages)]

    def stage_dims(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(self.num_stages)]

    def validate(self) -> None:
        if self.num_classes < 0:
            raise SwinEdgeError(
                f"model '{self.name}': num_classes {self.num_classes}; use a count >= 1, or 0 for "
                "a headless model that outputs pooled features"
            )
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise SwinEdgeError(
                f"model '{self.name}': depths {self.depths} and num_heads {self.num_heads} must be "
                "non-empty and of equal length"
            )
        for dim, heads in zip(self.stage_dims(), self.num_heads, strict=True):
            if dim % heads:
                raise SwinEdgeError(
                    f"model '{self.name}': stage width {dim} is not divisible by {heads} heads; "
                    "choose embed_dim/num_heads so that embed_dim*2^i % heads_i == 0"
                )
        stride = self.patch_size * 2 ** (self.num_stages - 1)
        ok = self.img_size > 0 and self.img_size % stride == 0
        if ok:
            for res in self.stage_resolutions():
                if res > self.window_size and res % self.window_size:
                    ok = False
        if not ok:
            step = stride * self.window_size
            lo = max(step, self.img_size // step * step)
            raise SwinEdgeError(
                f"model '{self.name}': img_size {self.img_size} does not fit patch "
                f"{self.patch_size}, window {self.window_size} and {self.num_stages} stages "
                "(stage sizes must be "
                f"multiples of the window); use a multiple of {step}, e.g. --img-size {lo}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["depths"], d["num_heads"] = list(self.depths), list(self.num_heads)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SwinConfig:
        return cls(**d)
