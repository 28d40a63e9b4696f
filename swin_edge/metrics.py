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
    """How closely test logits follow reference (FP32) logits; no labels needed."""

    top1_agreement: float
    top5_overlap: float
    cosine: float
    sqnr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def fidelity(reference: np.ndarray, test: np.ndarray) -> Fidelity:
    k = min(5, reference.shape[1])
    agree = float(np.mean(reference.argmax(1) == test.argmax(1)))
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    test_top = np.argsort(-test, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, test_top, strict=True)])
    r = reference.astype(np.float64)
    t = test.astype(np.float64)
    cos = np.sum(r * t, 1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1) + 1e-12)
    return Fidelity(agree, float(overlap), float(cos.mean()), sqnr_db(reference, test))


@dataclass
class Accuracy:
    top1: float
    top5: float
    count: int

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    return Accuracy(topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5), len(labels))
