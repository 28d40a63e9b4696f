"""Latency statistics shared by the backends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class LatencyStats:
    """Per-batch latency in milliseconds and throughput in images/s."""

    batch_size: int
    iterations: int
    warmup: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    throughput: float
    samples_ms: list[float] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_samples(
        cls, samples_ms: list[float] | np.ndarray, batch_size: int, warmup: int
    ) -> LatencyStats:
        s = np.asarray(samples_ms, dtype=np.float64)
        p50 = float(np.percentile(s, 50))
        return cls(
            batch_size,
            len(s),
            warmup,
            float(s.mean()),
            p50,
            float(np.percentile(s, 90)),
            float(np.percentile(s, 99)),
            float(s.min()),
            batch_size * 1000.0 / p50,
            [float(v) for v in s],
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["samples_ms"]
        return d


@dataclass
class InterleavedTiming:
    """Per-model timings from interleaved rounds: ``rounds[name]`` holds one
    :class:`LatencyStats` per round, in round order; ``pooled`` merges a model's rounds."""

    rounds: dict[str, list[LatencyStats]]

    def p50s(self, name: str) -> list[float]:
        return [s.p50_ms for s in self.rounds[name]]

    def pooled(self, name: str) -> LatencyStats:
        first = self.rounds[name][0]
        samples = [v for s in self.rounds[name] for v in s.samples_ms]
        return LatencyStats.from_samples(samples, first.batch_size, first.warmup)

    def ratios(self, num: str, den: str) -> np.ndarray:
        """Per-round latency(num) / latency(den)."""
        return np.asarray(self.p50s(num)) / np.asarray(self.p50s(den))

    def speedup(self, name: str, reference: str) -> dict[str, float | int]:
        """Median, min and max over rounds of p50(reference) / p50(name)."""
        r = 1.0 / self.ratios(name, reference)
        return {
            "median": float(np.median(r)),
            "min": float(r.min()),
            "max": float(r.max()),
            "rounds": len(r),
        }


def interleaved_benchmark(
    runners: Mapping[str, Any], rounds: int, iterations: int, warmup: int
) -> InterleavedTiming:
    """Time every runner (``benchmark(iterations, warmup)``) in ``rounds`` interleaved rounds
    (A, B, A, B, ...), so a busy spell on a shared machine hits every model alike. The first
    round warms up with ``warmup`` runs, later rounds with a few (caches after a switch)."""
    out: dict[str, list[LatencyStats]] = {name: [] for name in runners}
    for i in range(rounds):
        for name, runner in runners.items():
            w = warmup if i == 0 else min(warmup, 2)
            out[name].append(runner.benchmark(iterations=iterations, warmup=w))
    return InterleavedTiming(out)
