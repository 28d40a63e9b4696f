"""Start and stop a local ``tritonserver`` on loopback ports (tests, ``serve-bench``).

The binary comes from the ``nvidia-pytriton`` wheel (Triton 2.51, Linux x86-64 glibc 2.35+),
installed without its dependencies (its metadata pins numpy<2, which this project does not
need: only the binary is used). What makes it run here:

* its shared libraries are in ``nvidia_pytriton.libs`` (found through ``LD_LIBRARY_PATH``);
* the Python backend needs the stub built for this interpreter's version
  (``python_backend_stubs/3.X/triton_python_backend_stub``): a private backend folder links
  the backend library, its utils module and that stub;
* the stub embeds libpython 3.X, isolated (``PYTHONPATH`` and virtual environments are
  ignored): this interpreter's ``LIBDIR`` goes first on ``LD_LIBRARY_PATH`` so it is the same
  build (its standard library), and ``SWIN_EDGE_TRITON_SITE`` names this environment's
  site-packages, which the model templates add with ``site.addsitedir``.

The server listens on 127.0.0.1 only, on free ports; it runs in its own process group, and
:meth:`TritonServer.stop` (also on exit from the ``with`` block) ends the group: SIGTERM, then
SIGKILL after ``stop_timeout_s``, and removes the Python backend's shared-memory regions (named
with a prefix of this server's own).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependencyError, SwinEdgeError

SERVER_HINT = (
    "install Triton's server binary: pip install --no-deps nvidia-pytriton==0.7.0 "
    "(Linux x86-64, glibc 2.35+)"
)
SITE_ENV = "SWIN_EDGE_TRITON_SITE"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class TritonDist:
    """Where the pytriton wheel keeps the server, its backends and libraries."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path


def find_tritonserver() -> TritonDist:
    """The bundled ``tritonserver`` and the Python-backend stub for this interpreter; a
    one-line :class:`MissingDependencyError` saying how to install it otherwise."""
    try:  # located, never imported (its Python side wants numpy<2 and more)
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"Triton Inference Server is not installed; {SERVER_HINT}")
    root = Path(next(iter(spec.submodule_search_locations)))
    dist = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = TritonDist(
        binary=dist / "bin" / "tritonserver",
        python_backend=dist / "backends" / "python",
        stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        libs=root.parent / "nvidia_pytriton.libs",
    )
    if not found.binary.is_file():
        raise MissingDependencyError(f"'{found.binary}' is missing; {SERVER_HINT}")
    if not found.stub.is_file():
        raise MissingDependencyError(
            f"no Python backend stub for Python {version} in '{found.stub.parent.parent}'; run "
            "under a Python the wheel ships a stub for (3.8-3.13)"
        )
    return found


def python_site_dirs() -> list[str]:
    """This environment's package folders, for the stub: site-packages (``.pth`` files, so an
    editable install, are processed by ``site.addsitedir``) and the folder holding swin_edge."""
    import swin_edge

    dirs = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    dirs.append(str(Path(swin_edge.__file__).resolve().parent.parent))
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerConfig:
    """Server settings. Ports 0 are picked free on 127.0.0.1. ``shm_mb``: the Python
    backend's shared memory per model instance (grows in steps of the same size)."""

    repository: str | Path
    http_port: int = 0
    grpc_port: int = 0
    startup_timeout_s: float = 120.0
    stop_timeout_s: float = 10.0
    shm_mb: int = 4
    log_verbose: int = 0
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not Path(self.repository).is_dir():
            raise SwinEdgeError(f"model repository '{self.repository}' is not a folder")
        for p in (self.http_port, self.grpc_port):
            if not 0 <= p <= 65535:
                raise SwinEdgeError(f"port {p}: use 0 (free) or 1..65535")
        if self.startup_timeout_s <= 0 or self.stop_timeout_s <= 0 or self.shm_mb < 1:
            raise SwinEdgeError("timeouts must be > 0 and shm_mb >= 1")


class TritonServer:
    """``with TritonServer(ServerConfig(repo)) as s: ...`` (``s.http_url``, ``s.grpc_url``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.http_port = config.http_port
        self.grpc_port = config.grpc_port
        self._work: tempfile.TemporaryDirectory | None = None
        self.log_path: Path | None = None
        self._stopped_log = ""
        self.shm_prefix = f"swin_edge_triton_{os.getpid()}_{secrets.token_hex(4)}_"

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _backends(self, dist: TritonDist, work: Path) -> Path:
        """A backend folder whose python backend uses the stub for this interpreter."""
        py = work / "backends" / "python"
        py.mkdir(parents=True)
        for src in (*dist.python_backend.iterdir(), dist.stub):
            if src.is_file():
                (py / src.name).symlink_to(src)
        return py.parent

    def environment(self, dist: TritonDist) -> dict[str, str]:
        """The server's environment: libraries, the stub's libpython, and site folders."""
        env = dict(os.environ)
        libs = [str(dist.libs)]
        libdir = sysconfig.get_config_var("LIBDIR")
        ldlib = sysconfig.get_config_var("LDLIBRARY") or ""
        if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir:
            if (Path(libdir) / ldlib).exists():
                libs.insert(0, libdir)  # the stub embeds the same libpython as this interpreter
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env[SITE_ENV] = os.pathsep.join(python_site_dirs())
        return env

    def command(self, dist: TritonDist, backends: Path) -> list[str]:
        c = self.config
        return [
            str(dist.binary),
            f"--model-repository={Path(c.repository).resolve()}",
            f"--backend-directory={backends}",
            f"--http-address={HOST}",
            f"--http-port={self.http_port}",
            f"--grpc-address={HOST}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--allow-gpu-metrics=false",
            "--disable-auto-complete-config",  # the configs are served exactly as written
            "--strict-readiness=true",
            f"--exit-timeout-secs={max(1, int(c.stop_timeout_s) // 2)}",
            f"--log-verbose={c.log_verbose}",
            f"--backend-config=python,shm-default-byte-size={c.shm_mb << 20}",
            f"--backend-config=python,shm-growth-byte-size={c.shm_mb << 20}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *c.extra_args,
        ]

    def start(self) -> None:
        """Start the server and wait until every model is ready; on failure the server is
        stopped and the error quotes its log."""
        if self.proc is not None:
            raise SwinEdgeError("this server is already started")
        dist = find_tritonserver()
        self._work = tempfile.TemporaryDirectory(prefix="swin_edge-triton-")
        work = Path(self._work.name)
        backends = self._backends(dist, work)
        self.http_port = self.config.http_port or free_port()
        self.grpc_port = self.config.grpc_port or free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        self.log_path = work / "tritonserver.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(dist, backends),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(dist),
                start_new_session=True,  # its own process group: the stubs stop with it
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SwinEdgeError(
                    f"tritonserver exited with code {self.proc.returncode} while starting: "
                    f"{self.log_errors()}"
                )
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            time.sleep(0.2)
        raise SwinEdgeError(
            f"tritonserver was not ready after {self.config.startup_timeout_s:.0f} s: "
            f"{self.log_errors()}"
        )

    def log_text(self) -> str:
        """The server's log so far (stdout and stderr)."""
        if self.log_path is None or not self.log_path.is_file():
            return self._stopped_log
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_errors(self, limit: int = 3) -> str:
        """The last error lines of the log, joined into one line."""
        lines = [ln.strip() for ln in self.log_text().splitlines()]
        keep = [
            ln for ln in lines if ln.startswith("E") or "error" in ln.lower() or "UNAVAILABLE" in ln
        ]
        keep = [ln for ln in keep if "CudaDriverHelper" not in ln] or lines[-limit:]
        return " | ".join(keep[-limit:])[:2000] or "no log output"

    def _remove_shm(self) -> None:
        """Delete the Python backend's shared-memory regions of this server: it removes them
        when it unloads its models, but not when its exit timeout runs out first (an idle
        keep-alive client connection can use it up) or it is killed."""
        shm = _shm_dir()
        with contextlib.suppress(OSError):
            for p in shm.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    p.unlink()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End the server and its stubs (SIGTERM to the group, SIGKILL after the timeout)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.config.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # stubs left in the group
                os.killpg(proc.pid, signal.SIGKILL)
            self._remove_shm()
        if self._work is not None:
            self._stopped_log = self.log_text()
            self._work.cleanup()
            self._work = None
            self.log_path = None


def _shm_dir() -> Path:
    return Path("/dev/shm")


def tritonserver_problem() -> str | None:
    """Why the bundled server cannot run here (for skipping tests), or None."""
    if not sys.platform.startswith("linux"):
        return "the bundled tritonserver is a Linux binary"
    try:
        find_tritonserver()
    except SwinEdgeError as e:
        return str(e)
    return None
