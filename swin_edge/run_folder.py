"""A run folder that is always consistent: built in a staging folder, swapped in whole.

``build`` writes its FP32 ONNX, INT8 ONNX, engines and report into a hidden sibling
``.<name>.staging-<pid>`` and only when every step succeeded replaces the run folder with it.
A failed, interrupted (Ctrl-C, SIGTERM) or killed build therefore leaves the previous run
untouched, never a new ``model.onnx`` beside an older INT8 model and report. Staging folders of
killed builds are removed by the next build into the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import SwinEdgeError
from .utils import pid_alive

# Files a run folder may hold: what build writes (and hidden temp/staging debris).
_OWN = re.compile(
    r"model\.[\w.-]+\.(onnx|engine|json|xml|bin)|model\.onnx|report\.(json|md|png)"
    r"|timing\.cache|deploy\.json|\..+"
)
_DEBRIS = re.compile(r"\.(?P<name>.+)\.(staging|old)-(?P<pid>\d+)")


def check_run_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding files build did not write
    (replacing it would delete them)."""
    if out.exists() and not out.is_dir():
        raise SwinEdgeError(f"--out '{out}' is a file; pass a folder for the run")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _OWN.fullmatch(p.name))
        if foreign:
            raise SwinEdgeError(
                f"--out '{out}' holds files that build did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); build replaces its run folder whole, "
                "so pass a new or empty folder"
            )


def remove_debris(out: Path) -> int:
    """Delete staging/old folders of ``out`` left by builds that were killed; a build killed
    between moving the old run aside and moving the new one in gets its old run back."""
    removed = 0
    with contextlib.suppress(OSError):
        for p in sorted(out.parent.iterdir()):
            m = _DEBRIS.fullmatch(p.name)
            if not m or m["name"] != out.name or pid_alive(int(m["pid"])):
                continue
            if ".old-" in p.name and not out.exists():
                os.replace(p, out)
            else:
                shutil.rmtree(p, ignore_errors=True)
            removed += 1
    return removed


@contextlib.contextmanager
def staged_run_folder(
    out: str | os.PathLike, check: Callable[[Path], None] = check_run_folder
) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out``, on any error or
    interrupt it is deleted and ``out`` stays as it was. ``check`` refuses an ``out`` that
    must not be replaced (by default :func:`check_run_folder`)."""
    out = Path(out)
    check(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(out)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
