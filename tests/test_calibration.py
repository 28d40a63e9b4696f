import shutil

import numpy as np
import pytest
from PIL import Image

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
