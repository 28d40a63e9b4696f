"""Latency statistics shared by the backends."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
        )

    def to_dict(self) -> dict:
        return asdict(self)
