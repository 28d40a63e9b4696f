"""Named Swin variants (Microsoft/timm names and short aliases) and ``create_model``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import SwinEdgeError
from .config import SwinConfig
from .swin import SwinTransformer

_ARCH = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}


def _variants() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for size, arch in _ARCH.items():
        for window, img, crop in ((7, 224, 0.9), (12, 384, 1.0)):
            if size in ("tiny", "small") and window == 12:
                continue
            name = f"swin_{size}_patch4_window{window}_{img}"
            out[name] = dict(arch, window_size=window, img_size=img, crop_pct=crop, name=name)
        out[f"swin_{size}"] = out[f"swin_{size}_patch4_window7_224"]
    return out


VARIANTS = _variants()


def list_variants() -> list[str]:
    return sorted(VARIANTS)


def variant_config(name: str, **overrides: Any) -> SwinConfig:
    """Config of a named variant; ``overrides`` (img_size, window_size, num_classes...) win."""
    if name not in VARIANTS:
        raise SwinEdgeError(f"unknown model '{name}'; choose one of: {', '.join(list_variants())}")
    kw = dict(VARIANTS[name])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if "img_size" in overrides and overrides["img_size"] is not None:
        kw["name"] = f"{kw['name']}@{kw['img_size']}"
    return SwinConfig(**kw)


def create_model(
    name: str | SwinConfig = "swin_tiny",
    checkpoint: str | None = None,
    features_only: bool = False,
    **overrides: Any,
) -> SwinTransformer:
    """Build a model in eval mode, optionally loading any supported checkpoint format.

    ``None`` overrides mean "not given"; without a ``num_classes`` override the checkpoint's
    classifier size is used, and a headless checkpoint (no classifier weights, timm's
    ``num_classes=0``) gives a headless model whose output is the pooled features.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = name if isinstance(name, SwinConfig) else variant_config(name, **overrides)
    if isinstance(name, SwinConfig) and overrides:
        cfg = replace(cfg, **overrides)
    state = None
    if checkpoint is not None:
        from .checkpoint import is_headless, load_checkpoint, load_into, num_classes_of

        state, fmt = load_checkpoint(checkpoint)
        n = num_classes_of(state)
        if is_headless(state) and not features_only:
            if overrides.get("num_classes", 0) != 0:
                raise SwinEdgeError(
                    f"checkpoint '{checkpoint}' has no classifier weights (a num_classes=0 "
                    f"backbone), so --num-classes {overrides['num_classes']} cannot be loaded; "
                    "drop --num-classes to export its pooled features, or pass --features-only"
                )
            n = 0
        if n is not None and "num_classes" not in overrides and n != cfg.num_classes:
            cfg = replace(cfg, num_classes=n)
    model = SwinTransformer(cfg, features_only=features_only)
    if state is not None:
        load_into(model, state, source=checkpoint, fmt=fmt)
    return model.eval()
