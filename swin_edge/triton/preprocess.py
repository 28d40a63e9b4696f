"""Encoded image bytes -> model input, exactly as calibration preprocesses (no torch import).

:func:`swin_edge.calibration.preprocess_image` imports the model package (and torch) through
its config class; Triton's preprocessing model runs in the Python backend's stub, where a torch
import would cost a second and hundreds of MB per instance. This module repeats the same steps
(16-bit grayscale to 8-bit, RGB, shorter side resize, center crop, [0, 1], mean/std) on a plain
dict of the :class:`~swin_edge.model.config.PreprocessConfig` fields; the tests assert both give
identical arrays.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
FIELDS = ("img_size", "crop_pct", "interpolation", "mean", "std")


def preprocess_fields(pp: Any) -> dict[str, Any]:
    """The fields this module needs, from a PreprocessConfig or its dict."""
    d = pp if isinstance(pp, Mapping) else pp.to_dict()
    return {
        "img_size": int(d["img_size"]),
        "crop_pct": float(d["crop_pct"]),
        "interpolation": str(d["interpolation"]),
        "mean": [float(v) for v in d["mean"]],
        "std": [float(v) for v in d["std"]],
    }


def preprocess_pil(img: Any, pp: Mapping[str, Any]) -> np.ndarray:
    """PIL image -> (3, H, W) float32, the steps of ``calibration.preprocess_image``."""
    from PIL import Image

    if img.mode in _WIDE_MODES:
        v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        img = Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8))
    img = img.convert("RGB")
    size_out = int(pp["img_size"])
    short = int(size_out / float(pp["crop_pct"]))
    w, h = img.size
    if w <= h:
        size = (short, max(short, round(h * short / w)))
    else:
        size = (max(short, round(w * short / h)), short)
    img = img.resize(size, resample=Image.Resampling(_RESAMPLE[pp["interpolation"]]))
    left = (size[0] - size_out) // 2
    top = (size[1] - size_out) // 2
    img = img.crop((left, top, left + size_out, top + size_out))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pp["mean"], np.float32)) / np.asarray(pp["std"], np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess_bytes(data: bytes, pp: Mapping[str, Any]) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> (3, H, W) float32; ValueError when they are not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return preprocess_pil(img, pp)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"not a readable JPEG/PNG image ({e})") from None
