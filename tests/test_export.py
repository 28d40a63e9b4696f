import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from swin_edge.errors import SwinEdgeError
from swin_edge.export import ExportConfig, lint_onnx, read_model_config, torch_to_onnx
from swin_edge.model import SwinTransformer, create_model, swin

from .conftest import TINY


@pytest.fixture(scope="module")
def swin_t_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "swin_t.onnx"
    model = create_model("swin_tiny")
    res = torch_to_onnx(model, path, ExportConfig(dynamic_batch=True, batch_size=2))
    res.model = model
    return res


@pytest.mark.slow
def test_swin_t_export_is_static_small_and_exact(swin_t_onnx):
    res = swin_t_onnx
    assert res.lint.ok, res.lint.summary()
    assert res.lint.num_nodes <= 700
    assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4
    for op in ("Shape", "Mod", "NonZero", "ConstantOfShape", "Range", "Pad"):
        assert op not in res.lint.op_counts
    assert read_model_config(res.path)["name"] == "swin_tiny_patch4_window7_224"


@pytest.mark.slow
def test_dynamic_batch_runs_other_batch_sizes(swin_t_onnx):
    sess = ort.InferenceSession(str(swin_t_onnx.path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        ref = swin_t_onnx.model(x).numpy()
    dims = sess.get_inputs()[0].shape
    assert isinstance(dims[0], str) and dims[1:] == [3, 224, 224]
    out = sess.run(None, {"input": x.numpy()})[0]
    assert out.shape == (3, 1000) and abs(out - ref).max() <= 1e-4


def test_static_batch_and_features_only(tmp_path):
    model = SwinTransformer(TINY, features_only=True).eval()
    res = torch_to_onnx(model, tmp_path / "f.onnx", ExportConfig(batch_size=2))
    assert res.lint.ok and res.max_abs_diff <= 1e-4
    graph = onnx.load(str(res.path)).graph
    assert [o.name for o in graph.output] == ["stage1", "stage2", "stage3"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


class _DynamicSwinLike(nn.Module):
    """What naive exports contain: torch.roll and sizes read from x.shape."""

    def forward(self, x):
        b, c, h, w = x.shape
        x = torch.roll(x, shifts=(-1, -1), dims=(2, 3))
        return x.reshape(b, c, h * w).sum(-1)


def export_dynamic(path, dynamic_axes):
    """Export the naive module with TorchScript's exporter, as timm-style exports are made."""
    torch.onnx.export(
        _DynamicSwinLike(),
        (torch.randn(1, 3, 8, 8),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        dynamic_axes={"x": dynamic_axes},
    )
    return path


def test_linter_flags_dynamic_shape_ops(tmp_path):
    path = export_dynamic(tmp_path / "dyn.onnx", {0: "b", 2: "h"})
    report = lint_onnx(path)
    assert not report.ok
    text = report.summary()
    assert "Shape" in text and "'x' dim 2 is symbolic" in text


def test_linter_flags_unsupported_op_and_old_opset():
    node = onnx.helper.make_node("NonMaxSuppressionX", ["a"], ["b"], domain="com.example")
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    text = lint_onnx(model).summary()
    assert "opset 13 < 17" in text and "com.example::NonMaxSuppressionX" in text


def test_node_limit_fails_without_writing(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(SwinEdgeError, match="nodes > limit 10"):
        torch_to_onnx(SwinTransformer(TINY).eval(), out, ExportConfig(max_nodes=10))
    assert list(tmp_path.iterdir()) == []


def test_export_folds_query_scale_and_gelu_fuses_in_onnxruntime(tmp_path):
    model = SwinTransformer(TINY).eval()
    res = torch_to_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(res.path)).graph
    attn_muls = [n.name for n in graph.node if n.op_type == "Mul" and ".attn" in n.name]
    assert attn_muls == []  # 1/sqrt(d) lives in the qkv weights
    assert not any(n.op_type == "Mul" for n in graph.node if ".attn" in n.name)
    assert res.max_abs_diff <= 1e-4
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(res.path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("Gelu") == sum(TINY.depths) and "Erf" not in ops
    assert model.layers[0].blocks[0].attn.scale_folded is False  # the caller's model untouched


def _softmax_tensors(path, x):
    """Run the exported model with every Softmax input and output exposed."""
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == "Softmax"]
    names = [n.input[0] for n in nodes] + [n.output[0] for n in nodes]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(names, {"input": x})
    return values[: len(nodes)], values[len(nodes) :]


@pytest.mark.parametrize(
    "fill, below_normal", [(None, False), (-100.0, True)], ids=["export-fill", "timm-fill"]
)
def test_exported_mask_keeps_softmax_weights_normal(tmp_path, monkeypatch, fill, below_normal):
    """Denormal attention weights slow Softmax and the next MatMul several-fold on CPUs that
    handle them in microcode (seen on Intel Xeon; AVX2 kernels that flush them to zero do
    not pay). The guarantee is machine-independent: the exact softmax of the exported logits,
    computed in float64, keeps every weight at or above float32's smallest normal."""
    if fill is not None:
        monkeypatch.setattr(swin, "EXPORT_MASK_FILL", fill)
    torch.manual_seed(0)
    model = SwinTransformer(TINY).eval()
    res = torch_to_onnx(model, tmp_path / "m.onnx")
    assert res.max_abs_diff <= 1e-4  # the PyTorch model keeps timm's -100
    x = torch.randn(1, 3, 64, 64).numpy()
    logits, probs = _softmax_tensors(res.path, x)
    tiny = np.finfo(np.float32).tiny
    smallest = []
    for z in logits:
        z = z.astype(np.float64)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        smallest.append((e / e.sum(axis=-1, keepdims=True)).min())
    assert bool(min(smallest) < tiny) is below_normal, min(smallest)
    if not below_normal:  # then no kernel has a reason to produce a denormal either
        found = sum(int(((p != 0) & (np.abs(p) < tiny)).sum()) for p in probs)
        assert found == 0, found


def test_non_finite_outputs_fail_without_writing(tmp_path):
    model = SwinTransformer(TINY).eval()
    with torch.no_grad():
        model.layers[1].blocks[0].mlp.fc1.weight[0, 0] = float("nan")
    out = tmp_path / "m.onnx"
    with pytest.raises(SwinEdgeError, match="m.onnx': the outputs are not finite .*nan"):
        torch_to_onnx(model, out)
    assert list(tmp_path.iterdir()) == []


def test_headless_model_exports_pooled_features(tmp_path):
    from dataclasses import replace

    model = SwinTransformer(replace(TINY, num_classes=0)).eval()
    res = torch_to_onnx(model, tmp_path / "h.onnx")
    assert res.lint.ok and res.max_abs_diff <= 1e-4
    out = onnx.load(str(res.path)).graph.output
    assert [o.name for o in out] == ["features"]
    assert [d.dim_value for d in out[0].type.tensor_type.shape.dim] == [1, model.num_features]
