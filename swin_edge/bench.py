"""Noise-aware latency comparison and the CI regression gate.

Shared machines drift: a model timed a minute after another one sees a different machine. So
models are timed in interleaved rounds (A, B, A, B, ...), each round yields one p50 per model,
and a ratio between two models is the median of their per-round ratios. The gate compares such
*ratios* (e.g. INT8/FP32 latency) against a baseline, never absolute times.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends.onnxrt import OnnxrtRunner, OrtConfig
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
    per_round: dict[str, list[float]] = {n: [] for n in models}
    batch = 1
    for _ in range(rounds):
        for name, runner in runners.items():
            stats = runner.benchmark(iterations=iterations, warmup=warmup)
            per_round[name].append(stats.p50_ms)
            batch = stats.batch_size
    return InterleavedResult(list(models), per_round, batch, threads, iterations)


def environment() -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


@dataclass
class GateResult:
    ratio: float
    baseline_ratio: float
    max_regression: float
    passed: bool
    spread: tuple[float, float]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> float:
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


def read_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        float(data["ratio"])
        data["numerator"], data["denominator"]  # noqa: B018 - presence check
    except FileNotFoundError:
        raise SwinEdgeError(
            f"baseline '{path}' does not exist; create it with "
            "`python -m swin_edge bench ... --write-baseline FILE`"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise SwinEdgeError(
            f"baseline '{path}' is not a swin_edge baseline (needs ratio, "
            "numerator, denominator); regenerate it with --write-baseline"
        ) from None
    return data


def gate(result: InterleavedResult, baseline: dict[str, Any], max_regression: float) -> GateResult:
    """Pass when ratio(num/den) is at most baseline ratio * (1 + max_regression)."""
    num, den = baseline["numerator"], baseline["denominator"]
    for name in (num, den):
        if name not in result.rounds:
            raise SwinEdgeError(f"baseline compares '{num}'/'{den}' but '{name}' was not measured")
    ratio = result.ratio(num, den)
    base = float(baseline["ratio"])
    return GateResult(
        ratio,
        base,
        max_regression,
        ratio <= base * (1 + max_regression),
        result.ratio_spread(num, den),
        {n: result.p50(n) for n in result.names},
    )


def gate_markdown(g: GateResult, num: str, den: str) -> str:
    verdict = "PASS" if g.passed else "FAIL: latency regression"
    lines = [
        f"## Latency gate: {verdict}",
        "",
        f"Ratio `{num}` / `{den}` (median over interleaved rounds): **{g.ratio:.3f}** "
        f"(rounds ranged {g.spread[0]:.3f}-{g.spread[1]:.3f})",
        f"Baseline ratio: {g.baseline_ratio:.3f}; allowed: <= "
        f"{g.baseline_ratio * (1 + g.max_regression):.3f} (+{g.max_regression:.0%}); "
        f"change: {g.change:+.1%}",
        "",
        "| model | p50 (ms, median of rounds) |",
        "| --- | --- |",
    ]
    lines += [f"| {n} | {v:.2f} |" for n, v in g.details.items()]
    return "\n".join(lines) + "\n"


def write_baseline(
    path: str | Path, result: InterleavedResult, num: str, den: str, note: str = ""
) -> None:
    write_json_atomic(
        path,
        {
            "numerator": num,
            "denominator": den,
            "ratio": round(result.ratio(num, den), 4),
            "rounds": result.rounds,
            "environment": environment(),
            "note": note,
        },
    )
