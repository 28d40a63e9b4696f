"""Small shared helpers: atomic writes, hashing, lazy imports."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import MissingDependencyError, SwinEdgeError

STALE_TEMP_SECONDS = 3600  # a temp file this old with no known live writer is debris
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
# what follows '.{name}.' in a temp name: '{pid}-{host}.' (absent in old names), mkstemp's part
_TEMP_RE = re.compile(r"(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{6})\.)?[A-Za-z0-9_]{6,}\.tmp")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike, max_age_s: float = STALE_TEMP_SECONDS) -> int:
    """Delete ``.{name}.{pid}-{host}.*.tmp`` siblings of ``path`` that an earlier, killed writer
    left: their PID (on this host) is gone, or no live writer is known and they are older than
    ``max_age_s`` (a day for a live PID: PIDs are reused). Returns the number removed."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = 0
    now = time.time()
    try:
        siblings = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return 0
    for p in siblings:
        m = _TEMP_RE.fullmatch(p.name[len(prefix) :])
        if m is None:
            continue
        try:
            age = now - p.lstat().st_mtime
        except OSError:
            continue
        pid, host = m.group("pid"), m.group("host")
        if pid and host == _HOST:
            stale = not pid_alive(int(pid)) or age > 24 * max_age_s
        else:  # another host's, or an old-style name without a PID
            stale = age > max_age_s
        if stale:
            with contextlib.suppress(OSError):
                p.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temp name carries the writer's PID and host (``.{name}.{pid}-{host}.{random}.tmp``) so
    that temps of killed earlier runs are recognised and removed (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-{_HOST}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; artifacts get normal modes
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (an exact match's SQNR, say) as None: strict JSON,
    which other tools (JavaScript, jq) read, has no Infinity or NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as strict JSON (:func:`json_safe`), written atomically."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def read_json_doc(path: str | os.PathLike, fmt: str, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``format`` is ``fmt``; an unreadable, non-JSON or
    foreign file is a one-line :class:`SwinEdgeError` ending in ``fix`` (``what``: the kind
    of file expected, e.g. "swin_edge CPU bundle manifest")."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SwinEdgeError(f"'{path}' is not readable JSON ({type(e).__name__}); {fix}") from None
    found = doc.get("format") if isinstance(doc, dict) else None
    if found != fmt:
        raise SwinEdgeError(f"'{path}' is not a {what} (format {found!r}, expected {fmt!r}); {fix}")
    return doc


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def lazy_import(name: str, hint: str) -> ModuleType:
    """Import an optional dependency, raising a one-line error with ``hint`` when it is absent."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingDependencyError(f"'{name}' is not installed ({e}); {hint}") from None
