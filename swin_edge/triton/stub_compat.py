"""What the Python-backend model templates need to run in Triton's stub, whatever its numpy.

Copied beside each template's ``model.py`` as ``swin_edge_stub_compat.py`` (the stub puts the
version folder on ``sys.path``). On import it adds the folders named in
``SWIN_EDGE_TRITON_SITE`` (``os.pathsep``-separated) with ``site.addsitedir``: the stub embeds
its Python isolated (``PYTHONPATH`` and virtual environments are ignored), so
:mod:`swin_edge.triton.server` names the launching environment's site-packages there; ``.pth``
files (an editable install) are processed.

Tensors cross through DLPack only. The stub of nvidia-pytriton 0.7 (Triton 2.51) reads numpy
arrays through a numpy 1 ABI: under numpy 2 ``as_numpy`` returns wrong data and
``pb_utils.Tensor(name, array)`` a wrong byte size (and BYTES tensors crash it). Its
``Tensor.from_dlpack`` marks the consumed capsule ``used_dlpack`` instead of DLPack's
``used_dltensor``, which numpy's capsule destructor reports as an error on every tensor;
:func:`to_tensor` renames it (the stub frees the tensor itself).
"""

from __future__ import annotations

import ctypes
import os
import site
import sys
from typing import Any

SITE_ENV = "SWIN_EDGE_TRITON_SITE"


def add_site_dirs() -> None:
    """Make the packages of the environment named by ``SWIN_EDGE_TRITON_SITE`` importable."""
    for d in os.environ.get(SITE_ENV, "").split(os.pathsep):
        if d and d not in sys.path:
            site.addsitedir(d)


add_site_dirs()

import numpy as np  # noqa: E402

_USED_NAME = ctypes.create_string_buffer(b"used_dltensor")  # lives as long as the module
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_void_p]
_set_capsule_name.restype = ctypes.c_int


def as_numpy(tensor: Any) -> np.ndarray:
    """A CPU ``pb_utils.Tensor`` (numeric) as a numpy array, through DLPack (a view: copy it
    before the request is released)."""
    return np.from_dlpack(tensor)


def to_tensor(pb_utils: Any, name: str, array: np.ndarray) -> Any:
    """A ``pb_utils.Tensor`` named ``name`` holding ``array`` (made C-contiguous)."""
    array = np.ascontiguousarray(array)
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_capsule_name(capsule, ctypes.addressof(_USED_NAME))
    return tensor
