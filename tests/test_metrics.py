import numpy as np

from swin_edge.backends.timing import LatencyStats
from swin_edge.metrics import accuracy, fidelity, sqnr_db, topk_accuracy


def test_topk_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert topk_accuracy(logits, labels, 1) == 1 / 3
    assert topk_accuracy(logits, labels, 2) == 2 / 3
    acc = accuracy(logits, labels)
    assert acc.top5 == 1.0 and acc.count == 3


def test_fidelity_identical_and_noisy():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 100)).astype(np.float32)
    same = fidelity(ref, ref.copy())
    assert same.top1_agreement == 1.0 and same.top5_overlap == 1.0
    assert abs(same.cosine - 1) < 1e-6 and same.sqnr_db == float("inf")
    noise = rng.standard_normal(ref.shape).astype(np.float32) * 0.1  # power 0.01 -> 20 dB
    assert abs(sqnr_db(ref, ref + noise) - 20.0) < 0.3
    bad = fidelity(ref, rng.standard_normal(ref.shape).astype(np.float32))
    assert bad.top1_agreement < 0.2 and bad.cosine < 0.2


def test_latency_stats_percentiles():
    s = LatencyStats.from_samples(list(range(1, 101)), batch_size=2, warmup=3)
    assert s.min_ms == 1 and s.p50_ms == 50.5 and s.p90_ms < s.p99_ms <= 100
    assert abs(s.throughput - 2000 / 50.5) < 1e-9 and s.iterations == 100
