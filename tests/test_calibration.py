import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from swin_edge import calibration
from swin_edge.calibration import (
    default_calibration_dir,
    find_images,
    load_images,
    preprocess_image,
)
from swin_edge.errors import SwinEdgeError
from swin_edge.model import PreprocessConfig

PP = PreprocessConfig(img_size=32, crop_pct=0.875)
PHOTOS = sorted(default_calibration_dir().glob("*.jpg"))


def test_bundled_photos_are_real_and_load():
    assert len(PHOTOS) >= 12
    data = load_images(None, PP, use_cache=False)
    assert data.images.shape == (len(PHOTOS), 3, 32, 32) and data.labels is None
    assert data.images.std() > 0.3  # real content, not blank


def test_preprocess_resize_crop_normalize():
    img = Image.new("RGB", (80, 40), (255, 0, 128))
    arr = preprocess_image(img, PP)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32
    expected = (np.array([1.0, 0.0, 128 / 255]) - PP.mean) / PP.std
    assert np.allclose(arr.mean(axis=(1, 2)), expected, atol=1e-2)
    gray = preprocess_image(Image.new("L", (50, 50), 100), PP)
    assert gray.shape == (3, 32, 32)


def test_flat_folder_reports_and_skips_bad_files(tmp_path, caplog):
    for p in PHOTOS[:3]:
        shutil.copy(p, tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("hello")
    data = load_images(tmp_path, PP, use_cache=False)
    assert len(data) == 3
    skipped = {p.split("/")[-1]: why for p, why in data.skipped}
    assert "unreadable image" in skipped["broken.jpg"]
    assert "unsupported file type" in skipped["notes.txt"]
    assert "broken.jpg" in caplog.text


def test_image_folder_labels(tmp_path):
    for i, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        for p in PHOTOS[i * 2 : i * 2 + 2]:
            shutil.copy(p, tmp_path / cls)
    items, classes, _ = find_images(tmp_path)
    assert classes == ["cat", "dog"] and [lab for _, lab in items] == [0, 0, 1, 1]
    data = load_images(tmp_path, PP, use_cache=False)
    assert data.labels.tolist() == [0, 0, 1, 1]


def test_zero_usable_images_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(SwinEdgeError, match="no usable images in .*1 skipped"):
        load_images(tmp_path, PP, use_cache=False)
    with pytest.raises(SwinEdgeError, match="does not exist"):
        load_images(tmp_path / "missing", PP)


def test_sampling_is_deterministic():
    a = load_images(None, PP, num_images=5, seed=1, use_cache=False)
    b = load_images(None, PP, num_images=5, seed=1, use_cache=False)
    c = load_images(None, PP, num_images=5, seed=2, use_cache=False)
    assert a.paths == b.paths and np.array_equal(a.images, b.images)
    assert a.paths != c.paths


def test_cache_invalidated_by_image_or_preprocessing_change(tmp_path):
    folder, cache = tmp_path / "imgs", tmp_path / "cache"
    folder.mkdir()
    for p in PHOTOS[:2]:
        shutil.copy(p, folder)
    first = load_images(folder, PP, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    again = load_images(folder, PP, cache_dir=cache)
    assert again.digest == first.digest and np.array_equal(again.images, first.images)
    shutil.copy(PHOTOS[5], folder / PHOTOS[0].name)  # same name, new content
    changed = load_images(folder, PP, cache_dir=cache)
    assert changed.digest != first.digest
    assert not np.array_equal(changed.images, first.images)
    other_pp = load_images(folder, PreprocessConfig(img_size=32, crop_pct=1.0), cache_dir=cache)
    assert other_pp.digest != changed.digest
    assert len(list(cache.glob("*.npz"))) == 3


def test_cache_hits_the_same_images_in_a_moved_folder(tmp_path, caplog, monkeypatch):
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        (tmp_path / name / "cat").mkdir(parents=True)
        for p in PHOTOS[:2]:
            shutil.copy(p, tmp_path / name / "cat")
        (tmp_path / name / "cat" / "notes.txt").write_text("skipped")
    first = load_images(tmp_path / "a", PP, cache_dir=cache)

    def no_decode(path, pp):
        raise AssertionError(f"decoded {path} again instead of using the cache")

    monkeypatch.setattr(calibration, "_read", no_decode)
    moved = load_images(tmp_path / "b", PP, cache_dir=cache)
    assert "ignoring" not in caplog.text and len(list(cache.glob("*.npz"))) == 1
    assert moved.digest == first.digest and np.array_equal(moved.images, first.images)
    assert moved.paths == [p.replace(f"{tmp_path}/a/", f"{tmp_path}/b/") for p in first.paths]
    assert all(p.startswith(str(tmp_path / "b")) for p, _ in moved.skipped)
    assert moved.labels.tolist() == first.labels.tolist() and moved.class_names == ["cat"]


def png16(path, arr: np.ndarray) -> None:
    """Write a 16-bit grayscale (H, W) or RGB (H, W, 3) PNG by hand (PIL writes only gray)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    color = 0 if arr.ndim == 2 else 2
    header = struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_pngs_preprocess_like_their_8bit_version(tmp_path, channels):
    rng = np.random.default_rng(0)
    shape = (50, 70) if channels == 1 else (50, 70, 3)
    v16 = rng.integers(0, 65536, shape).astype(np.uint16)
    v16[:10] = 65535  # white stays white, no clipping of the rest
    png16(tmp_path / "a16.png", v16)
    Image.fromarray(np.round(v16 / 257).astype(np.uint8)).save(tmp_path / "a8.png")
    with Image.open(tmp_path / "a16.png") as im:
        assert channels == 3 or im.mode.startswith("I")  # PIL's wide grayscale modes
    data = load_images(tmp_path, PP, use_cache=False)
    a16, a8 = (data.images[data.paths.index(str(tmp_path / n))] for n in ("a16.png", "a8.png"))
    std = np.asarray(PP.std, np.float32)[:, None, None]
    assert np.abs((a16 - a8) * std).max() <= 1 / 255 + 1e-6
    assert a16.std() > 0.3  # not saturated to white
    if channels == 1:  # the other wide modes PIL may give
        wide = Image.frombytes("I;16B", v16.shape[::-1], v16.astype(">u2").tobytes())
        assert np.array_equal(preprocess_image(wide, PP), a16)
        assert np.array_equal(preprocess_image(wide.convert("I"), PP), a16)


def _cached(folder, cache):
    data = load_images(folder, PP, cache_dir=cache)
    return data, next(cache.glob("*.npz"))


@pytest.mark.parametrize(
    "content",
    [
        dict(images=np.zeros((2, 3, 16, 16), np.float32)),  # wrong image size
        dict(images=np.zeros((5, 3, 32, 32), np.float32)),  # wrong count
        dict(images=np.zeros((2, 3, 32, 32), np.float64)),  # wrong dtype
        dict(other=np.zeros(3)),  # wrong keys
    ],
)
def test_cache_of_the_wrong_shape_or_keys_is_rebuilt(tmp_path, caplog, content):
    folder, cache = tmp_path / "imgs", tmp_path / "cache"
    folder.mkdir()
    for p in PHOTOS[:2]:
        shutil.copy(p, folder)
    good, path = _cached(folder, cache)
    with np.load(path) as z:
        fields = dict(z)
    if "other" in content:
        fields = content
    else:
        fields.update(content, paths=np.asarray(good.paths * (len(content["images"]) // 2)))
    with open(path, "wb") as f:
        np.savez(f, **fields)
    again = load_images(folder, PP, cache_dir=cache)
    assert "ignoring" in caplog.text and np.array_equal(again.images, good.images)
    assert load_images(folder, PP, cache_dir=cache).images.shape == (2, 3, 32, 32)


def test_unusable_cache_locations_only_warn(tmp_path, caplog):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(PHOTOS[0], folder)
    ref = load_images(folder, PP, use_cache=False)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for cache in (blocker, ro):
            assert np.array_equal(load_images(folder, PP, cache_dir=cache).images, ref.images)
    finally:
        ro.chmod(0o755)
    assert "could not write image cache" in caplog.text
    entry = tmp_path / "c"
    load_images(folder, PP, cache_dir=entry)
    path = next(entry.glob("*.npz"))
    path.unlink()
    path.mkdir()  # the cache file's name taken by a folder
    assert np.array_equal(load_images(folder, PP, cache_dir=entry).images, ref.images)
    assert path.is_dir() and "is a folder" in caplog.text
