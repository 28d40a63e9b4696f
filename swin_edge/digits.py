"""scikit-learn's handwritten digits as a small real image task (8x8 -> 32x32 RGB).

Used by the INT8 accuracy tests and ``scripts/train_digits*.py``; needs scikit-learn (dev extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model.config import SwinConfig

DIGITS_CONFIG = SwinConfig(
    img_size=32,
    patch_size=2,
    embed_dim=32,
    depths=(2, 2),
    num_heads=(2, 4),
    window_size=4,
    num_classes=10,
    crop_pct=1.0,
    name="swin_digits",
)
TEST_FRACTION = 0.25
SPLIT_SEED = 0


def _upsample_u8(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    out = []
    for img in images:
        pil = Image.fromarray((img / 16.0 * 255).astype(np.uint8))
        out.append(np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC)))
    return np.stack(out)


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    return _upsample_u8(images, size).astype(np.float32) / 255.0


def load_digits_split(img_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); x as (N, 3, S, S) float32 normalized like ImageNet."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = _upsample(d.images, img_size)
    x = np.repeat(x[:, None], 3, axis=1)
    pp = DIGITS_CONFIG.preprocess
    x = (x - np.asarray(pp.mean, np.float32)[:, None, None]) / np.asarray(pp.std, np.float32)[
        :, None, None
    ]
    xtr, xte, ytr, yte = train_test_split(
        x.astype(np.float32),
        d.target.astype(np.int64),
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=d.target,
    )
    return xtr, ytr, xte, yte


def write_digits_folders(
    root: str | Path, num_calib: int = 300, img_size: int = 32
) -> tuple[Path, Path]:
    """The split as PNG files for the command line: ``root/calib`` (the first ``num_calib``
    training images, flat) and ``root/test`` (held out, one folder per class). Read with
    ``DIGITS_CONFIG.preprocess`` they are exactly the arrays of :func:`load_digits_split`."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    xtr, xte, _, yte = train_test_split(
        _upsample_u8(d.images, img_size),
        d.target,
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=d.target,
    )
    calib, test = Path(root) / "calib", Path(root) / "test"
    calib.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(xtr[:num_calib]):
        Image.fromarray(img).save(calib / f"{i:04d}.png")
    for i, (img, label) in enumerate(zip(xte, yte, strict=True)):
        (test / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(test / str(label) / f"{i:04d}.png")
    return calib, test
