"""Noise-aware latency comparison and the CI regression gate.

Shared machines drift: a model timed a minute after another one sees a different machine. So
models are timed in interleaved rounds (A, B, A, B, ...), each round yields one p50 per model,
and a ratio between two models is the median of their per-round ratios. The gate compares such
*ratios* (e.g. INT8/FP32 latency) against a baseline, never absolute times.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends.onnxrt import OnnxrtRunner, OrtConfig
from .backends.timing import interleaved_benchmark
from .cpu import CpuInfo, cpu_info, num_cores
from .errors import SwinEdgeError
from .utils import write_json_atomic


@dataclass
class InterleavedResult:
    """Per-model list of per-round p50 latencies (ms), in model order."""

    names: list[str]
    rounds: dict[str, list[float]]
    batch_size: int
    threads: int
    iterations: int

    def p50(self, name: str) -> float:
        return float(np.median(self.rounds[name]))

    def ratio(self, num: str, den: str) -> float:
        """Median over rounds of latency(num) / latency(den)."""
        r = np.asarray(self.rounds[num]) / np.asarray(self.rounds[den])
        return float(np.median(r))

    def ratio_spread(self, num: str, den: str) -> tuple[float, float]:
        r = np.asarray(self.rounds[num]) / np.asarray(self.rounds[den])
        return float(r.min()), float(r.max())


def interleaved_latency(
    models: dict[str, str | Path],
    rounds: int = 5,
    iterations: int = 20,
    warmup: int = 5,
    threads: int = 0,
    as_written: Collection[str] = (),
) -> InterleavedResult:
    """Time every model in ``rounds`` interleaved rounds of ``iterations`` runs each.

    Models named in ``as_written`` run exactly as written, without the runner's INT8 GEMM
    lowering: that is how an off-the-shelf ONNX Runtime user runs them.
    """
    if rounds < 1 or iterations < 1:
        raise SwinEdgeError("--rounds and --iterations must be >= 1")
    runners = {
        n: OnnxrtRunner(p, OrtConfig(threads=threads, lower_int8=n not in as_written))
        for n, p in models.items()
    }
    for r in runners.values():
        r.activate()
    timing = interleaved_benchmark(runners, rounds, iterations, warmup)
    per_round = {n: timing.p50s(n) for n in models}
    batch = timing.rounds[next(iter(models))][0].batch_size
    return InterleavedResult(list(models), per_round, batch, threads, iterations)


def environment() -> dict[str, Any]:
    import onnxruntime
    import torch

    info = cpu_info()
    return {
        "cpu": info.model,
        "cpu_class": info.cpu_class,
        "cpu_flags": list(info.flags),
        "cores": num_cores(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


BASELINE_FORMAT = "swin_edge.latency-baseline/2"


@dataclass
class GateResult:
    """The gate's verdict. ``baseline_ratio`` is None when this CPU class has no baseline:
    the gate then only reports (it passes, saying so), it never compares across classes."""

    ratio: float
    baseline_ratio: float | None
    max_regression: float
    passed: bool
    spread: tuple[float, float]
    cpu_class: str
    details: dict[str, Any] = field(default_factory=dict)
    baseline_note: str = ""
    cpu: dict[str, Any] = field(default_factory=dict)
    threads: int = 0  # what the ratio was measured with (0: all cores)

    @property
    def has_baseline(self) -> bool:
        return self.baseline_ratio is not None

    @property
    def change(self) -> float:
        if self.baseline_ratio is None:
            raise ValueError("no baseline for this CPU class")
        return self.ratio / self.baseline_ratio - 1.0


def parse_percent(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SwinEdgeError(f"--max-regression {text!r}: use a percentage like 10%") from None
    if not 0 <= value < 10:
        raise SwinEdgeError(f"--max-regression {text!r}: use a percentage like 10%")
    return value


def _check_entry(path: Path, key: str, entry: Any) -> None:
    ok = isinstance(entry, dict)
    try:
        ratio = float(entry["ratio"]) if ok else 0.0
    except (KeyError, TypeError, ValueError):
        ratio = 0.0
    if not (ok and np.isfinite(ratio) and 0 < ratio < 100):
        raise SwinEdgeError(
            f"baseline '{path}': entry '{key}' needs a ratio > 0; re-record it on a machine of "
            f"that class with `python -m swin_edge bench --write-baseline {path}`"
        )
    threads = entry.get("threads", 0)
    if not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 0):
        raise SwinEdgeError(
            f"baseline '{path}': entry '{key}' has threads {threads!r}; use 0 (all cores) or "
            "the thread count it was recorded with"
        )


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Load a baseline file: ``numerator``/``denominator`` and one entry per CPU class."""
    path = Path(path)
    hint = f"regenerate it with `python -m swin_edge bench --write-baseline {path}`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SwinEdgeError(
            f"baseline '{path}' does not exist; create it with "
            "`python -m swin_edge bench ... --write-baseline FILE`"
        ) from None
    except IsADirectoryError:
        raise SwinEdgeError(f"baseline '{path}' is a folder; pass the baseline .json") from None
    except (ValueError, UnicodeDecodeError):
        raise SwinEdgeError(f"baseline '{path}' is not JSON; {hint}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("numerator", "denominator")
    ):
        raise SwinEdgeError(
            f"baseline '{path}' is not a swin_edge baseline (needs numerator, denominator and "
            f"per-CPU-class entries); {hint}"
        )
    if "classes" not in data:
        raise SwinEdgeError(
            f"baseline '{path}' has one ratio for every CPU (old format); INT8/FP32 ratios "
            f"depend on the CPU's ISA, so baselines are kept per CPU class: {hint}"
        )
    if not isinstance(data["classes"], dict):
        raise SwinEdgeError(f"baseline '{path}': 'classes' must map CPU classes to entries")
    for key, entry in data["classes"].items():
        _check_entry(path, key, entry)
    return data


def baseline_threads(baseline: dict[str, Any], cpu: CpuInfo | None = None) -> int | None:
    """The thread count (0: all cores) this CPU class's baseline ratio was recorded with, which
    the gate must measure with too; None when the class has no entry."""
    entry = baseline["classes"].get((cpu or cpu_info()).cpu_class)
    return None if entry is None else int(entry.get("threads", 0))


def gate(
    result: InterleavedResult,
    baseline: dict[str, Any],
    max_regression: float,
    cpu: CpuInfo | None = None,
) -> GateResult:
    """Pass when ratio(num/den) <= the baseline ratio of this CPU class * (1 + max_regression).

    A CPU class without an entry passes with a notice: its ratio is not comparable to any
    other class's (INT8's advantage depends on VNNI/AMX)."""
    num, den = baseline["numerator"], baseline["denominator"]
    for name in (num, den):
        if name not in result.rounds:
            raise SwinEdgeError(f"baseline compares '{num}'/'{den}' but '{name}' was not measured")
    cpu = cpu or cpu_info()
    ratio = result.ratio(num, den)
    entry = baseline["classes"].get(cpu.cpu_class)
    base = None if entry is None else float(entry["ratio"])
    return GateResult(
        ratio,
        base,
        max_regression,
        base is None or ratio <= base * (1 + max_regression),
        result.ratio_spread(num, den),
        cpu.cpu_class,
        {n: result.p50(n) for n in result.names},
        "" if entry is None else str(entry.get("note", "")),
        cpu.to_dict(),
        result.threads,
    )


def gate_markdown(g: GateResult, num: str, den: str, baseline_path: str = "BASELINE") -> str:
    if not g.has_baseline:
        verdict = f"PASS (no baseline for CPU class `{g.cpu_class}`: measured only)"
    else:
        verdict = "PASS" if g.passed else "FAIL: latency regression"
    cpu = g.cpu
    lines = [
        f"## Latency gate: {verdict}",
        "",
        f"CPU: {cpu.get('model', '?')}; class `{g.cpu_class}` "
        f"(flags: {', '.join(cpu.get('flags', [])) or 'none detected'})",
        "",
        f"Ratio `{num}` / `{den}` (median over interleaved rounds, "
        f"{g.threads or 'all'} thread(s)): **{g.ratio:.3f}** "
        f"(rounds ranged {g.spread[0]:.3f}-{g.spread[1]:.3f})",
    ]
    if g.has_baseline:
        assert g.baseline_ratio is not None
        lines.append(
            f"Baseline ratio for `{g.cpu_class}`: {g.baseline_ratio:.3f}; allowed: <= "
            f"{g.baseline_ratio * (1 + g.max_regression):.3f} (+{g.max_regression:.0%}); "
            f"change: {g.change:+.1%}"
        )
        if g.baseline_note:
            lines.append(f"Baseline note: {g.baseline_note}")
    else:
        lines.append(
            f"No baseline exists for CPU class `{g.cpu_class}`, and ratios of other classes are "
            "not comparable (INT8's gain depends on VNNI/AMX), so nothing was gated. Record "
            f"one on this machine with `python -m swin_edge bench --write-baseline "
            f"{baseline_path}` and commit it."
        )
    lines += ["", "| model | p50 (ms, median of rounds) |", "| --- | --- |"]
    lines += [f"| {n} | {v:.2f} |" for n, v in g.details.items()]
    return "\n".join(lines) + "\n"


def write_baseline(
    path: str | Path,
    result: InterleavedResult,
    num: str,
    den: str,
    note: str = "",
    cpu: CpuInfo | None = None,
) -> str:
    """Add or update this CPU class's entry in the baseline file; returns the class."""
    path = Path(path)
    cpu = cpu or cpu_info()
    data: dict[str, Any] = {"format": BASELINE_FORMAT, "numerator": num, "denominator": den}
    if path.exists():
        old = read_baseline(path)
        if (old["numerator"], old["denominator"]) != (num, den):
            raise SwinEdgeError(
                f"baseline '{path}' gates {old['numerator']}/{old['denominator']}, not "
                f"{num}/{den}; write this ratio to another file"
            )
        data["classes"] = old["classes"]
    else:
        data["classes"] = {}
    lo, hi = result.ratio_spread(num, den)
    data["classes"][cpu.cpu_class] = {
        "ratio": round(result.ratio(num, den), 4),
        "spread": [round(lo, 4), round(hi, 4)],
        "rounds": result.rounds,
        "threads": result.threads,
        "batch_size": result.batch_size,
        "environment": environment(),
        "note": note,
    }
    data["classes"] = dict(sorted(data["classes"].items()))
    write_json_atomic(path, data)
    return cpu.cpu_class
