"""Write the bundled calibration photos (public-domain/CC0 images shipped with scikit-image).

python scripts/make_calibration_photos.py calibration
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data as data
from PIL import Image

# name -> licence, as stated in scikit-image's docstrings
PHOTOS = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0, Stefan van der Walt",
    "coffee": "CC0, Rachel Michetti",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 1.0",
    "immunohistochemistry": "no known copyright restrictions",
    "camera": "CC0, Lav Varshney",
    "coins": "no known copyright restrictions",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "brick": "CC0 (CC0Textures)",
    "text": "public domain",
    "clock": "public domain, Stefan van der Walt",
    "cell": "CC0",
}
MAX_SIDE = 512


def main(out: str) -> None:
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Bundled calibration photos",
        "",
        "Real photos shipped inside scikit-image, resized to at most 512 px and saved as",
        "JPEG by `scripts/make_calibration_photos.py`. Licences, from scikit-image:",
        "",
    ]
    for name, licence in PHOTOS.items():
        arr = getattr(data, name)()
        if arr.dtype != np.uint8:
            arr = (arr / arr.max() * 255).astype(np.uint8)
        img = Image.fromarray(arr)
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(root / f"{name}.jpg", quality=90)
        lines.append(f"- `{name}.jpg`: {licence}")
    (root / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "calibration")
