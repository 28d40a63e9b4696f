import numpy as np
import onnx
import pytest
import torch

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.errors import SwinEdgeError
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import SwinTransformer

from ..conftest import MICRO as CFG


@pytest.fixture(scope="module")
def model_and_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("ort")
    model = SwinTransformer(CFG).eval()
    static = torch_to_onnx(model, d / "static.onnx", ExportConfig(batch_size=3)).path
    dynamic = torch_to_onnx(model, d / "dyn.onnx", ExportConfig(dynamic_batch=True)).path
    return model, static, dynamic


@pytest.mark.parametrize("which", ["static", "dynamic"])
def test_infer_all_matches_torch_for_any_count(model_and_paths, which):
    model, static, dynamic = model_and_paths
    x = np.random.default_rng(0).standard_normal((7, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with OnnxrtRunner(static if which == "static" else dynamic, OrtConfig(threads=1)) as r:
        out = r.infer_all(x, batch_size=2)
    assert out.shape == (7, CFG.num_classes) and np.abs(out - ref).max() < 1e-4


def test_benchmark_reports_ordered_percentiles(model_and_paths):
    _, static, _ = model_and_paths
    with OnnxrtRunner(static) as r:
        stats = r.benchmark(iterations=15, warmup=2)
    assert stats.batch_size == 3 and stats.iterations == 15 and stats.warmup == 2
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.throughput == pytest.approx(3000 / stats.p50_ms)


def test_missing_and_corrupt_models(tmp_path):
    with pytest.raises(SwinEdgeError, match="does not exist"):
        OnnxrtRunner(tmp_path / "nope.onnx").activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(SwinEdgeError, match="ONNX Runtime cannot load '.*bad.onnx'"):
        OnnxrtRunner(bad).activate()


def test_runner_refuses_models_that_are_not_image_models(tmp_path):
    from ..test_onnx_check import image_model

    path = tmp_path / "flat.onnx"
    onnx.save(image_model(in_shape=(1, 8)), str(path))
    with pytest.raises(SwinEdgeError, match=r"flat.onnx' input 'x' is float \(1, 8\); expected"):
        OnnxrtRunner(path).activate()
