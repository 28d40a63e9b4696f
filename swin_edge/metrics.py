"""Accuracy of a model against labels, and fidelity of INT8 logits against FP32 logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio, 10*log10(|ref|^2 / |ref - test|^2), in dB."""
    noise = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


@dataclass
class Fidelity:
    """How closely test outputs follow reference (FP32) outputs; no labels needed. Top-1/top-5
    are for logits (N, classes); for other outputs (feature maps) they are None."""

    top1_agreement: float | None
    top5_overlap: float | None
    cosine: float
    sqnr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def fidelity(reference: np.ndarray, test: np.ndarray) -> Fidelity:
    """Top-1 agreement and top-5 overlap (logits only), mean per-image cosine, SQNR."""
    r = reference.reshape(len(reference), -1).astype(np.float64)
    t = test.reshape(len(test), -1).astype(np.float64)
    cos = np.sum(r * t, 1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1) + 1e-12)
    if reference.ndim != 2:
        return Fidelity(None, None, float(cos.mean()), sqnr_db(reference, test))
    k = min(5, reference.shape[1])
    agree = float(np.mean(reference.argmax(1) == test.argmax(1)))
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    test_top = np.argsort(-test, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, test_top, strict=True)])
    return Fidelity(agree, float(overlap), float(cos.mean()), sqnr_db(reference, test))


def fidelity_per_output(
    names: list[str], reference: list[np.ndarray], test: list[np.ndarray]
) -> tuple[Fidelity, list[dict]]:
    """Fidelity of every output (``[{"name", "shape", ...Fidelity}]``) and a summary: the
    first output's top-1/top-5 (when logits), the lowest cosine and SQNR of all outputs."""
    per = [fidelity(r, t) for r, t in zip(reference, test, strict=True)]
    rows = [
        {"name": n, "shape": list(r.shape[1:]), **f.to_dict()}
        for n, r, f in zip(names, reference, per, strict=True)
    ]
    summary = Fidelity(
        per[0].top1_agreement,
        per[0].top5_overlap,
        min(f.cosine for f in per),
        min(f.sqnr_db for f in per),
    )
    return summary, rows


@dataclass
class Accuracy:
    top1: float
    top5: float
    count: int

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    return Accuracy(topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5), len(labels))
