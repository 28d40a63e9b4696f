"""``serve-bench``: a bounded load generator for a local Triton server (tritonclient).

For each concurrency level (a closed loop: N client threads, each with its own client, send
the next request when the last one answered) it runs a warm-up, then a measured window of
``duration_s``, and records every request's latency, failures (with their messages) and the
server's own statistics over the window (executions, inferences, batch sizes: what dynamic
batching formed). Reports: JSON, Markdown and a PNG of throughput against latency.

Bounds: only loopback addresses are accepted; every level stops at its deadline or after
``max_requests`` requests, whichever comes first, and every request has a client timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import platform
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import SwinEdgeError
from ..utils import atomic_path, lazy_import, write_json_atomic, write_text_atomic
from .model_config import INSTALL_HINT

FORMAT = "swin_edge.serve-bench/1"
PROTOCOLS = {"http": 8000, "grpc": 8001}
MAX_CONCURRENCY = 256
MAX_DURATION_S = 3600.0
MAX_REQUESTS = 10_000_000
POOL = 16  # distinct request payloads cycled through
_NP_TO_TRITON = {
    "TYPE_FP32": ("FP32", np.float32),
    "TYPE_FP16": ("FP16", np.float16),
    "TYPE_FP64": ("FP64", np.float64),
    "TYPE_UINT8": ("UINT8", np.uint8),
    "TYPE_INT8": ("INT8", np.int8),
    "TYPE_INT32": ("INT32", np.int32),
    "TYPE_INT64": ("INT64", np.int64),
}


def parse_local_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """``[http://|grpc://]HOST[:PORT]`` -> (``HOST:PORT`` for tritonclient, protocol). HOST
    must be a loopback address (127.0.0.0/8, ::1) or ``localhost`` resolving only to one."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme and scheme not in PROTOCOLS:
        raise SwinEdgeError(f"--url {url!r}: use http://HOST:PORT or grpc://HOST:PORT")
    if protocol and scheme and protocol != scheme:
        raise SwinEdgeError(f"--url {url!r} is {scheme} but --protocol is {protocol}")
    proto = protocol or scheme or "http"
    if proto not in PROTOCOLS:
        raise SwinEdgeError(f"--protocol {proto!r}: choose http or grpc")
    rest = rest.rstrip("/")
    if "/" in rest or not rest:
        raise SwinEdgeError(f"--url {url!r}: give HOST:PORT only (no path)")
    if rest.startswith("["):  # [::1]:8001
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.lstrip(":")
    elif rest.count(":") > 1:  # a bare IPv6 address, no port
        host, port_text = rest, ""
    else:
        host, _, port_text = rest.partition(":")
    try:
        port = int(port_text) if port_text else PROTOCOLS[proto]
    except ValueError:
        raise SwinEdgeError(f"--url {url!r}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise SwinEdgeError(f"--url {url!r}: port {port} is out of range 1..65535")
    if not _is_loopback(host):
        raise SwinEdgeError(
            f"--url {url!r}: serve-bench only loads a server on this machine; use a loopback "
            "address (127.0.0.1, localhost, [::1])"
        )
    return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), proto


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host != "localhost":
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


@dataclass(frozen=True)
class ServeBenchConfig:
    """One sweep. ``concurrency``: client counts, in order; ``duration_s`` measured and
    ``warmup_s`` unmeasured seconds per level; ``max_requests``: cap per level (warm-up and
    window each); ``batch``: images per request (models with a batch dim); ``images``: a
    folder of JPEG/PNG to send (default: the bundled photos); ``max_failed``: failed requests
    tolerated before :attr:`ServeBenchResult.passed` is False."""

    url: str
    model: str
    protocol: str | None = None
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    duration_s: float = 10.0
    warmup_s: float = 2.0
    max_requests: int = 100_000
    request_timeout_s: float = 30.0
    batch: int = 1
    images: str | None = None
    seed: int = 0
    max_failed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "concurrency", tuple(self.concurrency))
        parse_local_url(self.url, self.protocol)
        if not self.model:
            raise SwinEdgeError("--model: name the Triton model to load")
        if not self.concurrency or any(not 1 <= c <= MAX_CONCURRENCY for c in self.concurrency):
            raise SwinEdgeError(f"--concurrency: use counts in 1..{MAX_CONCURRENCY}")
        if not 0 < self.duration_s <= MAX_DURATION_S or not 0 <= self.warmup_s <= MAX_DURATION_S:
            raise SwinEdgeError(f"--duration must be in (0, {MAX_DURATION_S:g}] s, --warmup >= 0")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise SwinEdgeError(f"--max-requests: use 1..{MAX_REQUESTS}")
        if not 0 < self.request_timeout_s <= 600:
            raise SwinEdgeError("--request-timeout: use (0, 600] s")
        if self.batch < 1 or self.max_failed < 0:
            raise SwinEdgeError("--batch must be >= 1 and --max-failed >= 0")

    @property
    def address(self) -> str:
        return parse_local_url(self.url, self.protocol)[0]

    @property
    def proto(self) -> str:
        return parse_local_url(self.url, self.protocol)[1]


@dataclass
class LevelResult:
    """One concurrency level: latencies of answered requests (ms), failures, server stats."""

    concurrency: int
    seconds: float
    latencies_ms: list[float]
    failed: int
    errors: list[str]
    batch: int
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.failed

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    @property
    def throughput(self) -> float:
        """Inferences (images) answered per second."""
        return len(self.latencies_ms) * self.batch / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "ok": len(lat),
            "failed": self.failed,
            "errors": self.errors,
            "throughput": round(self.throughput, 2),
            "requests_per_s": round(len(lat) / self.seconds, 2) if self.seconds else 0.0,
            "latency_ms": {
                "p50": self.percentile(50),
                "p90": self.percentile(90),
                "p99": self.percentile(99),
                "mean": float(np.mean(lat)) if lat else None,
                "min": float(np.min(lat)) if lat else None,
                "max": float(np.max(lat)) if lat else None,
            },
            "server": self.server,
        }


@dataclass
class ServeBenchResult:
    config: ServeBenchConfig
    levels: list[LevelResult]
    model_config: dict[str, Any]
    input_info: dict[str, Any]
    server_version: str = ""

    @property
    def failed(self) -> int:
        return sum(lv.failed for lv in self.levels)

    @property
    def passed(self) -> bool:
        return self.failed <= self.config.max_failed

    def to_dict(self) -> dict[str, Any]:
        mc = self.model_config
        return {
            "format": FORMAT,
            "swin_edge": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "server": {
                "address": self.config.address,
                "protocol": self.config.proto,
                "triton_version": self.server_version,
                "model": self.config.model,
                "max_batch_size": int(mc.get("max_batch_size", 0) or 0),
                "dynamic_batching": "dynamic_batching" in mc,
                "instance_group": mc.get("instance_group", []),
                "backend": mc.get("platform") or mc.get("backend"),
            },
            "settings": asdict(self.config),
            "input": self.input_info,
            "levels": [lv.to_dict() for lv in self.levels],
            "failed": self.failed,
            "passed": self.passed,
            "environment": _environment(),
        }


def _environment() -> dict[str, Any]:
    from ..cpu import cpu_info, num_cores

    info = cpu_info()
    try:
        from importlib.metadata import version

        client = version("tritonclient")
    except Exception:
        client = "?"
    return {
        "cpu": info.model,
        "cpu_class": info.cpu_class,
        "cores": num_cores(),
        "python": platform.python_version(),
        "tritonclient": client,
        "platform": platform.platform(),
    }


class _Client:
    """One tritonclient client (HTTP or gRPC) with the calls serve-bench needs."""

    def __init__(self, address: str, protocol: str, timeout_s: float) -> None:
        self.protocol = protocol
        self.timeout = timeout_s
        name = "tritonclient.http" if protocol == "http" else "tritonclient.grpc"
        self.mod = lazy_import(name, INSTALL_HINT)
        if protocol == "http":
            self.client = self.mod.InferenceServerClient(
                address, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self.client = self.mod.InferenceServerClient(address)

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's config as a dict (gRPC's JSON writes int64 as strings: made ints)."""
        if self.protocol == "http":
            cfg = dict(self.client.get_model_config(model))
        else:
            cfg = self._grpc_config(model)
        cfg["max_batch_size"] = int(cfg.get("max_batch_size", 0) or 0)
        for key in ("input", "output"):
            cfg[key] = [
                {**t, "dims": [int(d) for d in t.get("dims", [])]} for t in cfg.get(key, [])
            ]
        return cfg

    def _grpc_config(self, model: str) -> dict[str, Any]:
        return dict(
            self.client.get_model_config(model, as_json=True, client_timeout=self.timeout)["config"]
        )

    def server_version(self) -> str:
        if self.protocol == "http":
            return str(self.client.get_server_metadata().get("version", ""))
        meta = self.client.get_server_metadata(as_json=True, client_timeout=self.timeout)
        return str(meta.get("version", ""))

    def statistics(self) -> dict[str, dict[str, Any]]:
        """{model: {"inferences", "executions", "batches": {size: executions}}}."""
        if self.protocol == "http":
            raw = self.client.get_inference_statistics()
        else:
            raw = self.client.get_inference_statistics(as_json=True, client_timeout=self.timeout)
        out: dict[str, dict[str, Any]] = {}
        for m in raw.get("model_stats", []):
            batches = {
                int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0))
                for b in m.get("batch_stats", [])
            }
            out[m["name"]] = {
                "inferences": int(m.get("inference_count", 0)),
                "executions": int(m.get("execution_count", 0)),
                "batches": batches,
            }
        return out

    def make_inputs(self, arrays: dict[str, tuple[str, np.ndarray]]) -> list[Any]:
        inputs = []
        for name, (dtype, arr) in arrays.items():
            inp = self.mod.InferInput(name, list(arr.shape), dtype)
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        return inputs

    def infer(self, model: str, inputs: list[Any]) -> None:
        if self.protocol == "http":
            self.client.infer(model, inputs)
        else:
            self.client.infer(model, inputs, client_timeout=self.timeout)

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _image_files(folder: str | None) -> list[Path]:
    """Up to 16 JPEG/PNG files of ``folder`` (default: the bundled calibration photos; found
    without importing swin_edge.calibration, which imports torch)."""
    if folder is None:
        here = Path(__file__).resolve().parent.parent
        found = [here.parent / "calibration", here / "data" / "calibration"]
        root = next((p for p in found if p.is_dir()), found[0])
    else:
        root = Path(folder)
    if not root.is_dir():
        raise SwinEdgeError(f"--images '{root}' is not a folder; pass a folder of JPEG/PNG")
    exts = {".jpg", ".jpeg", ".png"}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise SwinEdgeError(f"--images '{root}' holds no JPEG/PNG files")
    return files[:POOL]


def request_payloads(
    model_config: dict[str, Any], cfg: ServeBenchConfig
) -> tuple[list[dict[str, tuple[str, np.ndarray]]], dict[str, Any]]:
    """Up to 16 distinct requests for the model: encoded images for a UINT8 ``[-1]`` input
    (the JPEG ensemble), preprocessed images for a float (3, H, W) input, random data else."""
    from .preprocess import preprocess_pil

    mbs = int(model_config.get("max_batch_size", 0) or 0)
    inputs = model_config.get("input", [])
    if not inputs:
        raise SwinEdgeError(f"model '{cfg.model}' states no inputs in its config")
    batch = cfg.batch if mbs else 1
    if mbs and batch > mbs:
        raise SwinEdgeError(f"--batch {cfg.batch} exceeds the model's max_batch_size {mbs}")
    rng = np.random.default_rng(cfg.seed)
    first = inputs[0]
    dims = [int(d) for d in first.get("dims", [])]
    dtype = first.get("data_type", "TYPE_FP32")
    if len(inputs) == 1 and dtype == "TYPE_UINT8" and dims == [-1]:
        if batch != 1:
            raise SwinEdgeError("--batch: an encoded-image model takes one image per request")
        files = _image_files(cfg.images)
        payloads = []
        for f in files:
            data = np.frombuffer(f.read_bytes(), np.uint8)
            arr = data[None] if mbs else data
            payloads.append({first["name"]: ("UINT8", arr)})
        return payloads, {"kind": "encoded images", "files": len(files), "batch": 1}
    if any(d < 0 for inp in inputs for d in inp.get("dims", [])):
        raise SwinEdgeError(
            f"model '{cfg.model}' has variable input dims; serve-bench needs fixed dims"
        )
    image_like = len(inputs) == 1 and dtype == "TYPE_FP32" and len(dims) >= 3 and dims[-3] == 3
    if image_like:
        from PIL import Image

        files = _image_files(cfg.images)
        h = dims[-1]
        pp = {"img_size": h, "crop_pct": 0.875, "interpolation": "bicubic"}
        pp |= {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        imgs = []
        for f in files:
            with Image.open(f) as im:
                im.load()
                imgs.append(preprocess_pil(im, pp))
        payloads = []
        for i in range(min(POOL, len(imgs))):
            pick = [imgs[(i + k) % len(imgs)] for k in range(batch)]
            arr = np.stack(pick) if mbs else np.stack(pick).reshape(dims)
            payloads.append({first["name"]: ("FP32", np.ascontiguousarray(arr, np.float32))})
        return payloads, {"kind": "images", "files": len(files), "batch": batch}
    payloads = []
    for _ in range(POOL):
        req = {}
        for inp in inputs:
            tdt, npdt = _NP_TO_TRITON.get(inp.get("data_type", ""), (None, None))
            if tdt is None:
                raise SwinEdgeError(
                    f"model '{cfg.model}' input '{inp['name']}' has a data type serve-bench "
                    "cannot generate"
                )
            shape = ([batch] if mbs else []) + [int(d) for d in inp["dims"]]
            req[inp["name"]] = (tdt, rng.standard_normal(shape).astype(npdt))
        payloads.append(req)
    return payloads, {"kind": "random", "batch": batch}


def _stats_delta(before: dict, after: dict) -> dict[str, Any]:
    out = {}
    for name, a in after.items():
        b = before.get(name, {"inferences": 0, "executions": 0, "batches": {}})
        execs = a["executions"] - b["executions"]
        if execs <= 0:
            continue
        infs = a["inferences"] - b["inferences"]
        sizes = {
            s: n - b["batches"].get(s, 0)
            for s, n in sorted(a["batches"].items())
            if n - b["batches"].get(s, 0) > 0
        }
        out[name] = {
            "executions": execs,
            "inferences": infs,
            "avg_batch": round(infs / execs, 3),
            "batch_sizes": {str(s): n for s, n in sizes.items()},
        }
    return out


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def _settled_statistics(admin: _Client, wait_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """Statistics once they stop changing (the server counts a request after its response
    is sent, so the last answers of a window can be missing for a moment); {} when the
    server does not answer."""
    try:
        stats = admin.statistics()
        deadline = time.monotonic() + wait_s
        unchanged = 0
        while unchanged < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            again = admin.statistics()
            unchanged = unchanged + 1 if again == stats else 0
            stats = again
    except Exception:
        return {}
    return stats


def _run_phase(
    make_client: Callable[[], _Client],
    model: str,
    pools: list[list[list[Any]]],
    seconds: float,
    max_requests: int,
    record: bool,
) -> tuple[list[float], int, list[str], float]:
    """N threads (one per pool) in a closed loop until the deadline or the request cap;
    returns latencies (ms), the failure count, the first failure messages, and the seconds."""
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    failed = [0]
    budget = [max_requests]

    def take() -> bool:
        with lock:
            if budget[0] <= 0:
                return False
            budget[0] -= 1
            return True

    deadline = 0.0  # set just before the threads start

    def work(k: int) -> None:
        mine: list[float] = []
        errs: list[str] = []
        nfail = 0
        pool = pools[k]
        i = 0
        client = None
        try:
            client = make_client()  # in its own thread: HTTP clients are per-thread (gevent)
            while time.monotonic() < deadline and take():
                t0 = time.perf_counter()
                try:
                    client.infer(model, pool[i % len(pool)])
                except Exception as e:  # a failed request is data, not a crash
                    nfail += 1
                    if len(errs) < 20:
                        errs.append(_one_line(e))
                else:
                    mine.append((time.perf_counter() - t0) * 1000.0)
                i += 1
        except Exception as e:  # the client could not be made: count it, end this thread
            nfail += 1
            errs.append(_one_line(e))
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            with lock:
                latencies.extend(mine)
                failures.extend(errs)
                failed[0] += nfail

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(pools))]
    start = time.monotonic()
    deadline = start + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if not record:
        return [], 0, [], elapsed
    return latencies, failed[0], failures, elapsed


def serve_bench(
    cfg: ServeBenchConfig, progress: Callable[[str], None] | None = None
) -> ServeBenchResult:
    """Run the sweep; a server that cannot be reached or lacks the model is a one-line
    :class:`SwinEdgeError` before any load is sent."""
    address, proto = cfg.address, cfg.proto
    try:
        admin = _Client(address, proto, cfg.request_timeout_s)
        version = admin.server_version()
        model_config = admin.model_config(cfg.model)
    except SwinEdgeError:
        raise
    except Exception as e:
        raise SwinEdgeError(
            f"cannot query model '{cfg.model}' at {proto}://{address} "
            f"({_one_line(e)}); start the server and check --url, --protocol and --model"
        ) from None
    payloads, input_info = request_payloads(model_config, cfg)

    def make_client() -> _Client:
        return _Client(address, proto, cfg.request_timeout_s)

    levels = []
    try:
        levels = _sweep(cfg, admin, make_client, payloads, input_info["batch"], progress)
    finally:
        admin.close()
    return ServeBenchResult(cfg, levels, model_config, input_info, version)


def _sweep(
    cfg: ServeBenchConfig,
    admin: _Client,
    make_client: Callable[[], _Client],
    payloads: list[dict[str, tuple[str, np.ndarray]]],
    batch: int,
    progress: Callable[[str], None] | None,
) -> list[LevelResult]:
    levels = []
    for n in cfg.concurrency:
        pools = [
            [admin.make_inputs(payloads[(k + j) % len(payloads)]) for j in range(4)]
            for k in range(n)
        ]
        if cfg.warmup_s > 0:
            _run_phase(make_client, cfg.model, pools, cfg.warmup_s, cfg.max_requests, False)
        before = _settled_statistics(admin)
        lat, failed, errors, seconds = _run_phase(
            make_client, cfg.model, pools, cfg.duration_s, cfg.max_requests, True
        )
        after = _settled_statistics(admin)
        unique = list(dict.fromkeys(errors))[:5]
        level = LevelResult(n, seconds, lat, failed, unique, batch, _stats_delta(before, after))
        levels.append(level)
        if progress is not None:
            progress(_level_line(level))
    return levels


def _level_line(lv: LevelResult) -> str:
    p = {q: lv.percentile(q) for q in (50, 90, 99)}
    lat = (
        " ".join(f"p{q} {v:.1f}" for q, v in p.items() if v is not None) + " ms"
        if lv.latencies_ms
        else "no answers"
    )
    return (
        f"concurrency {lv.concurrency:3d}: {lv.throughput:8.1f} inf/s  {lat}  "
        f"{lv.requests} requests, {lv.failed} failed"
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per concurrency level."""
    srv, st = report["server"], report["settings"]
    ensemble = srv["backend"] == "ensemble"
    batching = "in its steps" if ensemble else "on" if srv["dynamic_batching"] else "off"
    lines = [
        f"# serve-bench: `{srv['model']}` on Triton {srv['triton_version'] or '?'}",
        "",
        f"{srv['protocol']}://{srv['address']}; backend {srv['backend']}, max_batch_size "
        f"{srv['max_batch_size']}, dynamic batching {batching}. Closed loop: each client sends "
        f"its next request when the last one is answered; {st['warmup_s']:g} s warm-up, then "
        f"{st['duration_s']:g} s measured per level (at most {st['max_requests']} requests); "
        f"input: {report['input']['kind']}, batch {report['input']['batch']} per request.",
        "",
        "| concurrency | requests | failed | throughput (inf/s) | p50 ms | p90 ms | p99 ms | "
        "server batch (avg) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for lv in report["levels"]:
        lat = lv["latency_ms"]
        own = lv["server"].get(srv["model"], {})
        if ensemble:  # the batches its step models formed
            steps = [v for k, v in lv["server"].items() if k != srv["model"]]
            own = max(steps, key=lambda v: v["avg_batch"], default={})
        cells = [
            str(lv["concurrency"]),
            str(lv["requests"]),
            str(lv["failed"]),
            f"{lv['throughput']:.1f}",
            *("-" if lat[q] is None else f"{lat[q]:.1f}" for q in ("p50", "p90", "p99")),
            f"{own['avg_batch']:.2f}" if own else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    errs = [(lv["concurrency"], e) for lv in report["levels"] for e in lv["errors"]]
    if errs:
        lines += ["", "Failures (first messages):", ""]
        lines += [f"- concurrency {c}: {e}" for c, e in errs]
    verdict = "PASS" if report["passed"] else "FAIL"
    lines += [
        "",
        f"{verdict}: {report['failed']} failed requests (allowed: {st['max_failed']}).",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in report["environment"].items()),
    ]
    return "\n".join(lines) + "\n"


def render_chart(series: Sequence[tuple[str, dict[str, Any]]], path: str | Path) -> Path:
    """Throughput against p50 (solid) and p99 (dashed) latency, one line per report in
    ``series`` ((label, report) pairs), points labelled with their concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (label, report) in enumerate(series):
        color = f"C{i}"
        lv = [x for x in report["levels"] if x["latency_ms"]["p50"] is not None]
        thr = [x["throughput"] for x in lv]
        for q, style in (("p50", "-o"), ("p99", "--s")):
            lat = [x["latency_ms"][q] for x in lv]
            ax.plot(lat, thr, style, color=color, label=f"{label} {q}", markersize=4)
        for x in lv:
            ax.annotate(
                f"c={x['concurrency']}",
                (x["latency_ms"]["p50"], x["throughput"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=color,
            )
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("throughput (inferences/s)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    models = ", ".join(dict.fromkeys(r["server"]["model"] for _, r in series))
    ax.set_title(f"Triton serve-bench: {models}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def write_reports(
    report: dict[str, Any], out_dir: str | Path, stem: str = "serve-bench"
) -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``out_dir``, each atomically."""
    out = Path(out_dir)
    paths = {k: out / f"{stem}.{k}" for k in ("json", "md", "png")}
    write_json_atomic(paths["json"], report)
    write_text_atomic(paths["md"], render_markdown(report))
    render_chart([(report["server"]["model"], report)], paths["png"])
    return paths
