"""Calibration/evaluation images: flat folder or ImageFolder tree, the model's own preprocessing.

Images are sampled deterministically (sorted paths, seeded choice), preprocessed exactly as the
model expects (resize shorter side, bicubic, center crop, mean/std) and cached as ``.npz`` keyed
by the preprocessing config and the images' contents, so a change to either invalidates it.
Unreadable or unsupported files are reported by name and skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SwinEdgeError
from .model.config import PreprocessConfig
from .utils import atomic_path

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png"})
DEFAULT_NUM_IMAGES = 300
_CACHE_VERSION = 2  # 2: paths relative to the image folder (a moved folder still hits)
_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}


def default_calibration_dir() -> Path:
    """The bundled public-domain photos (``calibration/`` in the source tree)."""
    for cand in (
        Path(__file__).resolve().parent.parent / "calibration",
        Path(__file__).resolve().parent / "data" / "calibration",
    ):
        if cand.is_dir():
            return cand
    raise SwinEdgeError("bundled calibration photos not found; pass --calib-dir DIR")


def default_cache_dir() -> Path:
    return Path(os.environ.get("SWIN_EDGE_CACHE", Path.home() / ".cache" / "swin_edge"))


@dataclass
class ImageSet:
    """Preprocessed images (N, 3, H, W) float32, labels (N,) int64 or None, and provenance."""

    images: np.ndarray
    labels: np.ndarray | None
    paths: list[str]
    class_names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    digest: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int):
        for i in range(0, len(self.images), batch_size):
            yield self.images[i : i + batch_size]


def find_images(root: str | Path) -> tuple[list[tuple[Path, int | None]], list[str], list]:
    """List (path, label) pairs. Subfolders with images make an ImageFolder (label = sorted
    class index); otherwise the folder is flat and unlabeled. Returns also class names and
    the skipped (path, reason) pairs for files with unsupported extensions."""
    root = Path(root)
    if not root.is_dir():
        raise SwinEdgeError(f"image folder '{root}' does not exist; pass a folder of JPEG/PNG")
    skipped: list[tuple[str, str]] = []
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [c for c in classes if any(p.is_file() for p in (root / c).rglob("*"))]
    items: list[tuple[Path, int | None]] = []

    def scan(folder: Path, label: int | None, recursive: bool) -> None:
        files = folder.rglob("*") if recursive else folder.iterdir()
        for p in sorted(files):
            if not p.is_file() or p.name.startswith(".") or p.name.lower() == "readme.md":
                continue
            if p.suffix.lower() in IMAGE_EXTS:
                items.append((p, label))
            else:
                skipped.append((str(p), "unsupported file type (use JPEG or PNG)"))

    if classes:
        for i, c in enumerate(classes):
            scan(root / c, i, recursive=True)
        for p in sorted(root.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                skipped.append((str(p), "outside the class folders of an ImageFolder tree"))
    else:
        scan(root, None, recursive=False)
    return items, classes, skipped


# PIL modes of 16-bit grayscale PNGs: convert("RGB") clips them at 255, i.e. to white.
# (16-bit RGB(A) PNGs open as 8-bit RGB(A), already scaled down by PIL.)
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def to_8bit(img):
    """A 16-bit grayscale PIL image as 8-bit ``L`` scaled by 255/65535 (so it preprocesses
    exactly like its 8-bit version, as PIL does for 16-bit RGB); other images unchanged."""
    from PIL import Image

    if img.mode not in _WIDE_MODES:
        return img
    v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
    return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8))  # mode L


def preprocess_image(img, pp: PreprocessConfig) -> np.ndarray:
    """PIL image -> (3, H, W) float32: resize shorter side, center crop, normalize."""
    from PIL import Image

    img = to_8bit(img).convert("RGB")
    w, h = img.size
    short = pp.resize_size
    if w <= h:
        size = (short, max(short, round(h * short / w)))
    else:
        size = (max(short, round(w * short / h)), short)
    img = img.resize(size, resample=Image.Resampling(_RESAMPLE[pp.interpolation]))
    left = (size[0] - pp.img_size) // 2
    top = (size[1] - pp.img_size) // 2
    img = img.crop((left, top, left + pp.img_size, top + pp.img_size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _read(path: Path, pp: PreprocessConfig) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return preprocess_image(img, pp)


def _rel(root: Path, path: str | Path) -> str:
    """``path`` relative to the image folder (as the cache stores it), else as it is."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _digest(
    root: Path, items: list[tuple[Path, int | None]], pp: PreprocessConfig, n: int, seed: int
) -> str:
    """The sampled files (path in the folder, label, content) and the preprocessing."""
    h = hashlib.sha256(json.dumps([_CACHE_VERSION, pp.to_dict(), n, seed]).encode())
    for p, label in items:
        h.update(f"{_rel(root, p)}|{label}|".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def load_images(
    root: str | Path | None,
    pp: PreprocessConfig,
    num_images: int = DEFAULT_NUM_IMAGES,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> ImageSet:
    """Sample up to ``num_images`` images deterministically and preprocess them (cached)."""
    root = Path(root) if root is not None else default_calibration_dir()
    if num_images < 1:
        raise SwinEdgeError(f"--num-images {num_images}: need at least 1 image")
    items, classes, skipped = find_images(root)
    if len(items) > num_images:
        items = sorted(random.Random(seed).sample(items, num_images), key=lambda t: str(t[0]))
    digest = _digest(root, items, pp, num_images, seed)
    cache = Path(cache_dir or default_cache_dir()) / f"images-{digest[:24]}.npz"
    if use_cache and (cached := _read_cache(cache, root, items, classes, pp)) is not None:
        images_, labels_, paths_, skipped_ = cached
        return ImageSet(images_, labels_, paths_, classes, skipped_, digest)
    images, labels, paths = [], [], []
    for path, label in items:
        try:
            images.append(_read(path, pp))
        except Exception as e:
            skipped.append((str(path), f"unreadable image ({type(e).__name__})"))
            continue
        labels.append(-1 if label is None else label)
        paths.append(str(path))
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not images:
        raise SwinEdgeError(
            f"no usable images in '{root}' ({len(skipped)} skipped); put JPEG/PNG files there "
            "(flat, or one subfolder per class)"
        )
    arr = np.stack(images)
    lab = np.asarray(labels, np.int64) if classes else None
    result = ImageSet(arr, lab, paths, classes, skipped, digest)
    if use_cache:
        _write_cache(cache, result, root)
    return result


def _read_cache(
    cache: Path,
    root: Path,
    items: list[tuple[Path, int | None]],
    classes: list[str],
    pp: PreprocessConfig,
) -> tuple[np.ndarray, np.ndarray | None, list[str], list[tuple[str, str]]] | None:
    """A cache entry that fits this request exactly, else None (with a warning when the file
    exists but is unreadable or does not fit: it is rebuilt). Its paths are relative to
    ``root``, so the same images in a moved or copied folder hit it."""
    if not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            images, labels, has_labels = z["images"], z["labels"], bool(z["has_labels"])
            paths = [str(root / str(p)) for p in z["paths"]]
            skipped = [(str(root / str(a)), str(b)) for a, b in z["skipped"].reshape(-1, 2)]
    except Exception as e:  # a folder, truncated or foreign file, missing keys, ...
        log.warning("ignoring unreadable image cache %s (%s); rebuilding", cache, type(e).__name__)
        return None
    n = len(paths)
    fits = (
        images.dtype == np.float32
        and images.shape == (n, 3, pp.img_size, pp.img_size)
        and n > 0
        and len(set(paths)) == n
        and set(paths) <= {str(p) for p, _ in items}
        and has_labels == bool(classes)
        and (
            not has_labels
            or labels.dtype == np.int64
            and labels.shape == (n,)
            and 0 <= labels.min() <= labels.max() < len(classes)
        )
    )
    if not fits:
        log.warning("ignoring image cache %s: it does not match these images; rebuilding", cache)
        return None
    return images, (labels if has_labels else None), paths, skipped


def _write_cache(cache: Path, result: ImageSet, root: Path) -> None:
    """Save ``result`` atomically; an unwritable cache folder only costs a warning."""
    try:
        if cache.is_dir():
            raise IsADirectoryError(21, "is a folder", str(cache))
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    images=result.images,
                    labels=result.labels if result.labels is not None else np.zeros(0, np.int64),
                    has_labels=result.labels is not None,
                    paths=np.asarray([_rel(root, p) for p in result.paths]),
                    skipped=np.asarray(
                        [(_rel(root, a), b) for a, b in result.skipped], dtype=str
                    ).reshape(-1, 2),
                )
    except OSError as e:
        log.warning(
            "could not write image cache %s (%s); continuing without it (set SWIN_EDGE_CACHE "
            "to a writable folder)",
            cache,
            e.strerror or type(e).__name__,
        )
