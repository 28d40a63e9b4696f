"""Model and preprocessing configuration, validated at construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import SwinEdgeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP_PCT = 0.875  # resize 256, crop 224
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        d = dict(d)
        for key in ("mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def crop_pct_for(crop: int, resize: int) -> float:
    """The crop fraction whose timm rule ``int(crop / crop_pct)`` gives exactly ``resize``."""
    pct = crop / resize
    for _ in range(8):  # float rounding can land one off; step to the neighbouring double
        got = int(crop / pct)
        if got == resize:
            break
        pct = math.nextafter(pct, 0.0 if got < resize else 2.0)
    return pct


@dataclass(frozen=True)
class PreprocessFlags:
    """Preprocessing from the command line (``--mean --std --resize --crop --interpolation``);
    None means not given. :meth:`apply` lays them over a model's own settings."""

    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: int | None = None
    crop: int | None = None
    interpolation: str | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
                if len(getattr(self, name)) != 3:
                    raise SwinEdgeError(f"--{name} {value}: give 3 values (R,G,B)")
        if self.std is not None and min(self.std) <= 0:
            raise SwinEdgeError(f"--std {self.std}: every value must be > 0")
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SwinEdgeError(f"--{name} {value}: use a size of at least 1 pixel")
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise SwinEdgeError(
                f"--interpolation {self.interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}"
            )

    def given(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def apply(self, base: PreprocessConfig | None, img_size: int, what: str) -> PreprocessConfig:
        """``base`` (the model's own settings, None when it has none) with the given flags laid
        over it, for an input of ``img_size``. Without a base every setting but --crop (the
        input size) must be given; the error names the missing ones."""
        if self.crop is not None and self.crop != img_size:
            raise SwinEdgeError(
                f"--crop {self.crop} does not match the input size {img_size} of {what} (the "
                f"crop is what the model sees); drop --crop or pass --crop {img_size}"
            )
        if base is None:
            needed = ("mean", "std", "resize", "interpolation")
            missing = [f"--{k}" for k in needed if getattr(self, k) is None]
            if missing:
                raise SwinEdgeError(
                    f"{what} carries no preprocessing settings; pass {', '.join(missing)} "
                    "(e.g. ImageNet: --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 "
                    f"--resize {round(img_size / IMAGENET_CROP_PCT)} --interpolation bicubic)"
                )
            base = PreprocessConfig(img_size=img_size)
        elif base.img_size != img_size:
            base = replace(base, img_size=img_size)
        resize = self.resize if self.resize is not None else base.resize_size
        if resize < img_size:
            raise SwinEdgeError(
                f"--resize {resize} is smaller than the input size {img_size} of {what}; resize "
                f"the shorter side to at least {img_size}"
            )
        return replace(
            base,
            crop_pct=crop_pct_for(img_size, resize) if self.resize is not None else base.crop_pct,
            interpolation=self.interpolation or base.interpolation,
            mean=self.mean or base.mean,
            std=self.std or base.std,
        )


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
                + self._window_hint(stride)
            )

    def _window_hint(self, stride: int) -> str:
        """``, or --window-size 5 or 10``: the windows (4..16) nearest to this one that fit
        ``img_size`` (a stage no larger than the window is one window), if it fits any."""
        if self.img_size <= 0 or self.img_size % stride:
            return ""
        res = self.stage_resolutions()
        fits = [w for w in range(4, 17) if all(r <= w or r % w == 0 for r in res)]
        near = sorted(sorted(fits, key=lambda w: (abs(w - self.window_size), -w))[:2])
        return f", or --window-size {' or '.join(map(str, near))}" if near else ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["depths"], d["num_heads"] = list(self.depths), list(self.num_heads)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SwinConfig:
        return cls(**d)
