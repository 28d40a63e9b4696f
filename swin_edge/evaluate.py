"""Evaluate several models (precisions/backends) on the same images against the FP32 one."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends.timing import LatencyStats
from .errors import SwinEdgeError
from .metrics import Accuracy, Fidelity, accuracy, fidelity


@dataclass
class Candidate:
    """A model to evaluate: ``name`` like ``onnxruntime-int8``; ``path`` to ONNX or engine."""

    name: str
    backend: str  # onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    path: Path
    recipe: dict[str, Any] | None = None


@dataclass
class Evaluation:
    name: str
    backend: str
    precision: str
    path: str
    size_mb: float
    latency: LatencyStats | None = None
    accuracy: Accuracy | None = None
    fidelity: Fidelity | None = None
    worst_layers: list[tuple[str, float]] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None  # how the runner ran it (e.g. ORT lowering)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "path": self.path,
            "size_mb": round(self.size_mb, 3),
            "latency": self.latency.to_dict() if self.latency else None,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "worst_layers": [[n, round(v, 2)] for n, v in self.worst_layers],
            "recipe": self.recipe,
            "runtime": self.runtime,
        }


Runner = Any  # OnnxrtRunner | TrtRunner: infer_all(images) and benchmark(iterations, warmup)


def evaluate(
    candidates: list[Candidate],
    images: np.ndarray,
    labels: np.ndarray | None,
    make_runner: Callable[[Candidate], Runner],
    iterations: int = 50,
    warmup: int = 10,
    progress: Callable[[str], None] | None = None,
) -> list[Evaluation]:
    """Run every candidate; the first one is the FP32 reference for fidelity."""
    results: list[Evaluation] = []
    reference: np.ndarray | None = None
    for cand in candidates:
        if progress:
            progress(f"evaluating {cand.name}")
        with make_runner(cand) as runner:
            logits = runner.infer_all(images)
            stats = runner.benchmark(iterations=iterations, warmup=warmup)
            runtime = runner.runtime_info() if hasattr(runner, "runtime_info") else None
        ev = Evaluation(
            cand.name,
            cand.backend,
            cand.precision,
            str(cand.path),
            os.path.getsize(cand.path) / 1e6,
            stats,
            recipe=cand.recipe,
            runtime=runtime,
        )
        if labels is not None:
            if labels.max() >= logits.shape[1]:
                raise SwinEdgeError(
                    f"the evaluation folder has class index {int(labels.max())} but "
                    f"'{cand.path}' has {logits.shape[1]} outputs; class subfolders (sorted) "
                    "must map to the model's classes"
                )
            ev.accuracy = accuracy(logits, labels)
        if reference is None:
            reference = logits
        else:
            ev.fidelity = fidelity(reference, logits)
        results.append(ev)
    return results
