"""Inference and timing shared by the CPU runners, whose models may have a static batch."""

from __future__ import annotations

import numpy as np

from .timing import LatencyStats


class StaticBatchInference:
    """``infer``/``infer_all`` for a runner that provides ``_ensure_active()``, ``_run(batch)``
    (every output for exactly one model batch) and ``static_batch`` (None when dynamic): a
    static-batch model is fed in its own chunks, the last one filled by repeating its image."""

    static_batch: int | None
    input_shape: tuple[int, ...]

    def _ensure_active(self) -> None:
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def time_once(self, batch: np.ndarray) -> float:
        """Milliseconds for one run of ``batch`` (one model batch)."""
        raise NotImplementedError

    def infer_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output for a (B, 3, H, W) batch."""
        self._ensure_active()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        b = self.static_batch
        if b is None or len(batch) == b:
            return self._run(batch)
        parts = []
        for i in range(0, len(batch), b):
            chunk = batch[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            parts.append([o[:n] for o in self._run(np.ascontiguousarray(chunk))])
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (the first output) for a (B, 3, H, W) batch."""
        return self.infer_outputs(batch)[0]

    def infer_all_outputs(self, images: np.ndarray, batch_size: int = 8) -> list[np.ndarray]:
        """Every output for all ``images``, in batches of the model's static batch (if any)."""
        self._ensure_active()
        step = self.static_batch or batch_size
        parts = [self.infer_outputs(images[i : i + step]) for i in range(0, len(images), step)]
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def infer_all(self, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
        return self.infer_all_outputs(images, batch_size)[0]

    def benchmark(self, iterations: int = 50, warmup: int = 10, seed: int = 0) -> LatencyStats:
        """Latency of one model batch of random input: ``warmup`` untimed runs, then
        ``iterations`` timed ones."""
        self._ensure_active()
        x = np.random.default_rng(seed).standard_normal(self.input_shape, dtype=np.float32)
        for _ in range(warmup):
            self.time_once(x)
        samples = [self.time_once(x) for _ in range(iterations)]
        return LatencyStats.from_samples(samples, self.input_shape[0], warmup)
