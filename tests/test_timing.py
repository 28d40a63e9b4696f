from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from swin_edge.backends.timing import LatencyStats, interleaved_benchmark
from swin_edge.evaluate import Candidate, evaluate
from swin_edge.report import render_markdown


def tiny_image_model(path: Path) -> Path:
    """(N, 3, 8, 8) -> (N, 4): enough of an image classifier for evaluate()'s checks."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    axes = numpy_helper.from_array(np.array([2, 3]), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w, axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


class Machine:
    """A shared machine whose load changes over time: every benchmark call is one time step."""

    def __init__(self, load: list[float]) -> None:
        self.load, self.step, self.calls = load, 0, []

    def slowdown(self) -> float:
        f = self.load[min(self.step, len(self.load) - 1)]
        self.step += 1
        return f


class FakeRunner:
    def __init__(self, name: str, ms: float, machine: Machine, classes: int = 4) -> None:
        self.name, self.ms, self.machine, self.classes = name, ms, machine, classes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def infer_all(self, images: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(self.classes, dtype=np.float32), (len(images), 1))

    def benchmark(self, iterations: int, warmup: int) -> LatencyStats:
        self.machine.calls.append(self.name)
        f = self.machine.slowdown()
        return LatencyStats.from_samples([self.ms * f] * iterations, 1, warmup)


def test_interleaved_rounds_alternate_and_cancel_a_busy_spell():
    m = Machine([1, 1, 1, 1, 3, 3, 1, 1, 1, 1])  # busy during round 3, for both models
    timing = interleaved_benchmark(
        {"fp32": FakeRunner("fp32", 40, m), "int8": FakeRunner("int8", 20, m)}, 5, 4, 2
    )
    assert m.calls == ["fp32", "int8"] * 5
    assert timing.speedup("int8", "fp32") == {"median": 2.0, "min": 2.0, "max": 2.0, "rounds": 5}
    pooled = timing.pooled("int8")
    assert pooled.iterations == 20 and pooled.p50_ms == 20 and pooled.p99_ms == pytest.approx(60)


def test_sequential_timing_would_be_fooled_where_evaluate_is_not(tmp_path):
    """Timing FP32 fully, then INT8 (the old way), a busy spell during INT8 shows INT8 slower
    than FP32; evaluate() interleaves, so the report's speedup stays the true 2x."""
    busy_later = [1] * 5 + [3] * 5
    seq = Machine(busy_later)
    fp32 = np.median([FakeRunner("a", 40, seq).benchmark(1, 0).p50_ms for _ in range(5)])
    int8 = np.median([FakeRunner("b", 20, seq).benchmark(1, 0).p50_ms for _ in range(5)])
    assert fp32 / int8 < 1  # what a sequential report would have said

    m = Machine(busy_later)
    f = tiny_image_model(tmp_path / "m.onnx")
    cands = [Candidate(n, "onnxruntime", n, f) for n in ("fp32", "int8")]
    ms = {"fp32": 40, "int8": 20}
    images = np.zeros((3, 3, 8, 8), np.float32)
    res = evaluate(cands, images, None, lambda c: FakeRunner(c.name, ms[c.name], m), 10, 1)
    assert m.calls == ["fp32", "int8"] * 5  # 10 iterations in 5 rounds
    assert res[1].speedup["median"] == pytest.approx(2.0)
    assert res[1].fidelity.top1_agreement == 1.0 and res[0].fidelity is None
    report = {
        "model": {"name": "t", "input_shape": [1, 3, 8, 8]},
        "data": {"source": "x", "count": 3},
        "results": [r.to_dict() for r in res],
    }
    md = render_markdown(report)
    assert "| 2.00x (0.67-2.00) |" in md and "5 interleaved rounds" in md
