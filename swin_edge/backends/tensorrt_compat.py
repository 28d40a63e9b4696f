"""Which TensorRT is installed and what it can do, detected by capability, never by version.

One code path serves TensorRT 10.x (JetPack 6.2 ships 10.3; desktop wheels 10.13) and 11.x
(``pip install tensorrt`` today). What differs, read from the module itself:

* weak typing: 10.x has ``BuilderFlag.FP16``/``INT8``; 11.0 removed them (every network is
  strongly typed, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is a deprecated no-op and
  trtexec rejects ``--fp16``/``--int8``);
* TF32 (``BuilderFlag.TF32``, on by default in both);
* DLA builds: weakly typed with ``FP16`` + ``GPU_FALLBACK`` where weak typing exists (trtexec
  10.x does the same), strongly typed from an FP16 ONNX with ``GPU_FALLBACK`` otherwise.

``tensorrt`` and ``pycuda`` are imported lazily: both are an optional extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import MissingDependencyError
from ..utils import lazy_import

INSTALL_HINT = (
    "install the optional extra: pip install 'swin_edge[tensorrt]' (desktop GPU), or on Jetson "
    "use JetPack's TensorRT (apt install python3-libnvinfer) and pip install pycuda"
)
MIN_MAJOR = 10


def release(version: str) -> tuple[int, ...]:
    """Numeric release of a TensorRT version string: '10.13.3.9.post1' -> (10, 13, 3, 9).

    PEP 440 post/dev/local suffixes (``.post1`` is a re-packaged wheel of the same libraries)
    and trtexec's banner form ('v100300' -> (10, 3, 0)) are understood.
    """
    m = re.fullmatch(r"v?(\d{5,6})", version.strip())
    if m:  # NV_TENSORRT_VERSION: major * 10000 + minor * 100 + patch
        v = int(m.group(1))
        return (v // 10000, v // 100 % 100, v % 100)
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return tuple(int(p) for p in m.group(1).split("."))


def same_release(a: str, b: str) -> bool:
    """True when two version strings name the same TensorRT release (major.minor.patch, and
    the build number when both carry one); '.postN' wheel suffixes are ignored."""
    ra, rb = release(a), release(b)
    n = max(3, min(len(ra), len(rb)))
    pad = (0,) * n
    return (ra + pad)[:n] == (rb + pad)[:n]


def import_tensorrt() -> Any:
    """``import tensorrt``, refusing TensorRT < 10 with a one-line error."""
    trt = lazy_import("tensorrt", INSTALL_HINT)
    try:
        major = release(str(trt.__version__))[0]
    except ValueError:
        raise MissingDependencyError(
            f"cannot read the TensorRT version {trt.__version__!r}"
        ) from None
    if major < MIN_MAJOR:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} found; strongly typed Q/DQ engines need TensorRT >= 10"
        )
    return trt


def import_cuda() -> Any:
    return lazy_import("pycuda.driver", INSTALL_HINT)


def tensorrt_available() -> bool:
    """True when TensorRT >= 10, pycuda and a CUDA GPU are usable."""
    try:
        import_tensorrt()
        cuda = import_cuda()
        cuda.init()
        return cuda.Device.count() > 0
    except Exception:
        return False


def _members(enum: Any) -> frozenset[str]:
    if enum is None:
        return frozenset()
    names = getattr(enum, "__members__", None)
    if names is not None:
        return frozenset(names)
    return frozenset(n for n in dir(enum) if n.isupper())


@dataclass(frozen=True)
class TrtCaps:
    """What the installed TensorRT offers (names read from the module)."""

    version: str
    builder_flags: frozenset[str]
    network_flags: frozenset[str]

    @classmethod
    def from_module(cls, trt: Any) -> TrtCaps:
        return cls(
            str(trt.__version__),
            _members(getattr(trt, "BuilderFlag", None)),
            _members(getattr(trt, "NetworkDefinitionCreationFlag", None)),
        )

    @property
    def major(self) -> int:
        return release(self.version)[0]

    @property
    def weak_typing(self) -> bool:
        """Precision builder flags exist (TensorRT 10.x); without them every network is
        strongly typed (11.x)."""
        return {"FP16", "INT8"} <= self.builder_flags

    @property
    def tf32_flag(self) -> bool:
        return "TF32" in self.builder_flags


__all__ = [
    "INSTALL_HINT",
    "TrtCaps",
    "import_cuda",
    "import_tensorrt",
    "release",
    "same_release",
    "tensorrt_available",
]
