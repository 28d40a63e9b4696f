import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from swin_edge.calibration import load_images
from swin_edge.errors import SwinEdgeError
from swin_edge.export import lint_onnx, torch_to_onnx
from swin_edge.metrics import fidelity
from swin_edge.model import SwinTransformer
from swin_edge.quantize import QuantRecipe, check_symmetric_int8, plan_placement, quantize_onnx
from swin_edge.quantize.qdq_passes import (
    activations_to_symmetric_int8,
    activations_to_uint8,
    sink_dequantize,
)

from .conftest import TINY


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "tiny.onnx"
    torch.manual_seed(0)  # the same weights whichever tests ran before
    model = SwinTransformer(TINY).eval()
    with torch.no_grad():  # non-zero biases (zero ones are dropped by the exporter)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    torch_to_onnx(model, path)
    return path


@pytest.fixture(scope="module")
def calib():
    return load_images(None, TINY.preprocess, use_cache=False).images


def run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def float_inputs_only(model, op_type):
    prod = producers(model)
    nodes = [n for n in model.graph.node if n.op_type == op_type]
    assert nodes
    return all(
        prod.get(n.input[0]) is None or prod[n.input[0]].op_type != "DequantizeLinear"
        for n in nodes
    )


def test_placement_cpu_moves_uint8_but_keeps_attention_logits_float(fp32):
    model = onnx.load(str(fp32))
    plan = plan_placement(model, "cpu")
    names = set(plan.quantize)
    assert "layers.0.blocks.1.attn.qkv/Gemm_0" in names
    assert "layers.0.blocks.1/Gather_0" in names  # the shifted-window gather before qkv: uint8
    assert "layers.0.blocks.1/Gather_1" not in names  # the gather back feeds the float residual
    for i in range(3):  # q, k^T, v head layouts
        assert f"layers.0.blocks.1.attn/Transpose_{i}" in names
    assert not any(n.endswith(("Softmax_0", "Add_0")) and ".attn/" in n for n in names)
    assert "layers.0.blocks.1.attn/Reshape_4" not in names  # reshape around the bias/mask add
    trt = plan_placement(model, "tensorrt")
    assert len(trt.residual_adds) == 2 * sum(TINY.depths)
    assert not any(".attn/" in n for n in trt.residual_adds)


def test_tensorrt_recipe_is_symmetric_int8_with_float_norms(fp32, calib, tmp_path):
    res = quantize_onnx(fp32, tmp_path / "trt.onnx", calib, QuantRecipe(target="tensorrt"))
    model = onnx.load(str(res.path))
    check_symmetric_int8(model)
    assert lint_onnx(model, allow_dynamic_batch=False).ok  # still static, TensorRT-parsable
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    for op in ("LayerNormalization", "Softmax"):
        assert float_inputs_only(model, op)
    gemm_biases = [n.input[2] for n in model.graph.node if n.op_type == "Gemm" and len(n.input) > 2]
    # float biases: float16 in the INT8 + FP16 model (scale_dtype auto = fp16 for tensorrt)
    assert gemm_biases and all(b in inits and inits[b].dtype == np.float16 for b in gemm_biases)
    adds = [n for n in model.graph.node if n.op_type == "Add" and n.name in res.quantized_nodes]
    prod = producers(model)
    assert adds and all(prod[i].op_type == "DequantizeLinear" for a in adds for i in a.input)
    x = calib[:8]
    assert fidelity(run(fp32, x), run(res.path, x)).cosine > 0.98


def test_cpu_recipe_uint8_activations_per_channel_weights(fp32, calib, tmp_path):
    res = quantize_onnx(fp32, tmp_path / "cpu.onnx", calib, QuantRecipe(target="cpu"))
    model = onnx.load(str(res.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    act_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert act_q and all(inits[n.input[2]].dtype == np.uint8 for n in act_q)
    w_dq = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and inits.get(n.input[0]) is not None
        and inits[n.input[0]].dtype == np.int8
    ]
    assert w_dq and all(inits[n.input[1]].size > 1 for n in w_dq)  # per-channel scales
    for op in ("LayerNormalization", "Softmax", "Conv"):  # Conv: see plan_placement
        assert float_inputs_only(model, op)
    assert "patch_embed.proj/Conv_0" in res.kept_float
    report = lint_onnx(model)  # uint8 grids are for ONNX Runtime, not TensorRT
    assert not report.ok and "not symmetric int8" in report.summary()
    x = calib[:8]
    assert fidelity(run(fp32, x), run(res.path, x)).cosine > 0.98


def test_keep_float_leaves_matching_layers_unquantized(fp32, calib, tmp_path):
    res = quantize_onnx(
        fp32,
        tmp_path / "kf.onnx",
        calib,
        QuantRecipe(target="cpu", keep_float=("fc2", "downsample")),
    )
    by_user = [n for n in res.kept_float if n != "patch_embed.proj/Conv_0"]  # cpu keeps Conv
    assert by_user and all("fc2" in n or "downsample" in n for n in by_user)
    model = onnx.load(str(res.path))
    prod = producers(model)
    for n in model.graph.node:
        if n.name in res.kept_float:
            assert all(
                prod.get(i) is None or prod[i].op_type != "DequantizeLinear" for i in n.input
            )


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods_change_ranges(fp32, calib, tmp_path, method):
    base = quantize_onnx(fp32, tmp_path / "mm.onnx", calib, QuantRecipe(target="tensorrt"))
    other = quantize_onnx(
        fp32,
        tmp_path / f"{method}.onnx",
        calib,
        QuantRecipe(target="tensorrt", calibration=method, percentile=99.9, histogram_bins=512),
    )

    def act_scales(path):
        m = onnx.load(str(path))
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        return np.array(
            [float(inits[n.input[1]]) for n in m.graph.node if n.op_type == "QuantizeLinear"]
        )

    a, b = act_scales(base.path), act_scales(other.path)
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_nncf_engine(fp32, calib, tmp_path, target):
    res = quantize_onnx(
        fp32, tmp_path / f"nncf-{target}.onnx", calib, QuantRecipe(target=target, engine="nncf")
    )
    model = onnx.load(str(res.path))
    assert res.qdq_counts["QuantizeLinear"] > 10
    if target == "tensorrt":
        check_symmetric_int8(model)
    else:  # int32 biases, so ONNX Runtime can fuse DQ->Gemm into QGemm
        inits = {i.name: i for i in model.graph.initializer}
        prod = producers(model)
        biases = [
            prod[n.input[2]] for n in model.graph.node if n.op_type == "Gemm" and len(n.input) > 2
        ]
        assert biases and all(
            b.op_type == "DequantizeLinear"
            and inits[b.input[0]].data_type == onnx.TensorProto.INT32
            for b in biases
        )
    x = calib[:8]
    assert fidelity(run(fp32, x), run(res.path, x)).cosine > 0.95


def test_qdq_passes_are_exact(fp32, calib, tmp_path):
    res = quantize_onnx(
        fp32, tmp_path / "n.onnx", calib, QuantRecipe(target="tensorrt", engine="nncf")
    )
    model = onnx.load(str(res.path))
    moved, converted = sink_dequantize(model), activations_to_uint8(model)
    assert moved > 0 and converted > 0
    onnx.save(model, str(tmp_path / "n2.onnx"))
    x = calib[:4]
    assert np.array_equal(run(res.path, x), run(tmp_path / "n2.onnx", x))


def _qdq_graph(zero_points: dict[str, np.ndarray]) -> onnx.ModelProto:
    """x -> Relu -> Q/DQ ("relu", uint8) and x -> Q/DQ ("asym", int8 zp 10) -> outputs, plus
    "raw": a Q whose codes are also a graph output (read as codes, so never re-gridded)."""
    h = onnx.helper
    nodes = [h.make_node("Relu", ["x"], ["r"])]
    inits = []
    for name, zp in zero_points.items():
        src = "r" if name == "relu" else "x"
        inits += [
            numpy_helper.from_array(np.array(0.02, np.float32), f"{name}_s"),
            numpy_helper.from_array(zp, f"{name}_zp"),
        ]
        qdq = [f"{name}_s", f"{name}_zp"]
        nodes += [
            h.make_node("QuantizeLinear", [src, *qdq], [f"{name}_q"], name=f"{name}_Q"),
            h.make_node("DequantizeLinear", [f"{name}_q", *qdq], [f"{name}_y"]),
        ]
    outs = [h.make_tensor_value_info(f"{n}_y", onnx.TensorProto.FLOAT, [64]) for n in zero_points]
    outs.append(h.make_tensor_value_info("raw_q", onnx.TensorProto.UINT8, [64]))
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [64])
    graph = h.make_graph(nodes, "g", [x], outs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_activations_to_symmetric_int8_keeps_the_range_on_int8(tmp_path):
    zps = {"relu": np.array(0, np.uint8), "asym": np.array(10, np.int8)}
    model = _qdq_graph({**zps, "raw": np.array(3, np.uint8)})
    x = np.linspace(-2.7, 2.3, 64, dtype=np.float32)  # inside both calibrated ranges
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert activations_to_symmetric_int8(model) == 2  # "raw" is read as codes: left alone
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = {n.name: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for name, reach in (("relu", 255), ("asym", 138)):  # codes 0..255; -128-10 .. 127-10
        scale, zp = (inits[i] for i in q[f"{name}_Q"].input[1:])
        assert zp.dtype == np.int8 and zp == 0 and np.isclose(scale, 0.02 * reach / 127, rtol=1e-6)
    assert inits[q["raw_Q"].input[2]].dtype == np.uint8
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for old, new, step in zip(
        before[:2], after[:2], (0.02 * 255 / 127, 0.02 * 138 / 127), strict=True
    ):
        assert np.abs(new - old).max() <= step  # the same values on the coarser grid
        assert not np.array_equal(new, old)
    np.testing.assert_array_equal(before[2], after[2])


def test_bad_recipe_and_missing_model(tmp_path, calib):
    with pytest.raises(SwinEdgeError, match="--target 'gpu'"):
        QuantRecipe(target="gpu")
    with pytest.raises(SwinEdgeError, match="entropy is an ONNX Runtime method"):
        QuantRecipe(engine="nncf", calibration="entropy")
    with pytest.raises(SwinEdgeError, match="does not exist"):
        quantize_onnx(tmp_path / "none.onnx", tmp_path / "o.onnx", calib, QuantRecipe())


@pytest.mark.parametrize("engine", ["ort", "nncf"])
def test_quantize_writes_nothing_beside_a_read_only_input(fp32, calib, tmp_path, engine):
    src = tmp_path / "ro"
    src.mkdir()
    model = src / "model.onnx"
    shutil.copy(fp32, model)
    # ORT's own scratch name beside the input, taken by a folder: writing it there fails
    (src / "model-inferred.onnx").mkdir()
    out = tmp_path / "out"
    src.chmod(0o555)  # refuses writes for non-root users; as root the listing checks it
    try:
        for i in range(2):  # two quantizations of models in one folder must not collide
            quantize_onnx(model, out / f"q{i}.onnx", calib[:4], QuantRecipe(engine=engine))
    finally:
        src.chmod(0o755)
    assert sorted(p.name for p in src.iterdir()) == ["model-inferred.onnx", "model.onnx"]
    assert not any((src / "model-inferred.onnx").iterdir())
    assert sorted(p.name for p in out.iterdir()) == ["q0.onnx", "q1.onnx"]


def test_quantize_refuses_its_own_input_as_output(fp32, calib, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(fp32, model)
    before = model.read_bytes()
    (tmp_path / "link.onnx").symlink_to(model)
    for out in (model, tmp_path / "." / "m.onnx", tmp_path / "link.onnx"):
        with pytest.raises(SwinEdgeError, match="is the input model"):
            quantize_onnx(model, out, calib[:2], QuantRecipe())
    with pytest.raises(SwinEdgeError, match="is a folder"):
        quantize_onnx(model, tmp_path, calib[:2], QuantRecipe())
    assert model.read_bytes() == before


def test_quantize_refuses_quantized_and_non_image_models_up_front(fp32, calib, tmp_path):
    int8 = quantize_onnx(fp32, tmp_path / "int8.onnx", calib[:2], QuantRecipe()).path
    with pytest.raises(SwinEdgeError, match="already quantized .*QuantizeLinear.*export"):
        quantize_onnx(int8, tmp_path / "again.onnx", calib[:2], QuantRecipe())
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 10])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    flat = tmp_path / "flat.onnx"
    onnx.save(onnx.helper.make_model(graph), str(flat))
    with pytest.raises(SwinEdgeError, match=r"flat.onnx' input 'x' is float \(1, 10\); expected"):
        quantize_onnx(flat, tmp_path / "f8.onnx", calib[:2], QuantRecipe())
    with pytest.raises(SwinEdgeError, match=r"shape \(3, 32, 32\).*takes \(3, 64, 64\)"):
        quantize_onnx(fp32, tmp_path / "s.onnx", calib[:2, :, :32, :32], QuantRecipe())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.onnx", "int8.onnx"]
