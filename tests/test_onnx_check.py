import onnx
import pytest
from onnx import TensorProto, helper

from swin_edge.errors import SwinEdgeError
from swin_edge.onnx_check import check_image_model, check_image_model_file


def image_model(
    in_shape=(1, 3, 8, 8), out_shape=(1, 10), in_type=TensorProto.FLOAT, qdq=False, inputs=1
) -> onnx.ModelProto:
    """GlobalAveragePool -> Flatten -> Gemm (optionally behind a Q/DQ pair) on an image."""
    c, k = in_shape[1] if isinstance(in_shape[1], int) else 3, out_shape[-1]
    ins = [
        helper.make_tensor_value_info(f"x{i}" if i else "x", in_type, in_shape)
        for i in range(inputs)
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    w = helper.make_tensor("w", TensorProto.FLOAT, (k, c), [0.1] * (k * c))
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"])]
    if qdq:
        s = helper.make_tensor("s", TensorProto.FLOAT, (), [0.1])
        nodes += [
            helper.make_node("QuantizeLinear", ["p", "s"], ["pq"]),
            helper.make_node("DequantizeLinear", ["pq", "s"], ["pd"]),
        ]
    nodes += [
        helper.make_node("Flatten", ["pd" if qdq else "p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    inits = [w] + ([s] if qdq else [])
    return helper.make_model(helper.make_graph(nodes, "g", ins, [out], inits))


def test_accepts_image_models_and_reports_their_shapes():
    info = check_image_model(image_model(), "m.onnx")
    assert info.input_name == "x" and info.input_shape == (1, 3, 8, 8)
    assert info.output_shapes == ((1, 10),) and "(3, 8, 8)" in info.describe()
    dyn = check_image_model(image_model(in_shape=("batch", 3, 8, 8)), "d.onnx")
    assert dyn.input_shape == (None, 3, 8, 8) and dyn.same_shapes(info)
    assert not check_image_model(image_model(out_shape=(1, 5)), "o.onnx").same_shapes(info)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(in_shape=(1, 10)), r"input 'x' is float \(1, 10\); expected an image model"),
        (dict(in_shape=(1, 1, 8, 8)), r"\(1, 1, 8, 8\); expected"),
        (dict(in_shape=(1, 3, "h", "w")), r"\(1, 3, '\?', '\?'\).*static C, H, W"),
        (dict(in_type=TensorProto.UINT8), "is uint8"),
        (dict(inputs=2), r"has 2 inputs \['x', 'x1'\]"),
    ],
)
def test_refuses_what_is_not_an_image_model(kw, match):
    with pytest.raises(SwinEdgeError, match=f"'bad.onnx'.*{match}"):
        check_image_model(image_model(**kw), "bad.onnx")


def test_quantized_models_are_refused_only_when_asked():
    model = image_model(qdq=True)
    check_image_model(model, "q.onnx")
    with pytest.raises(SwinEdgeError, match="'q.onnx' is already quantized .*DequantizeLinear"):
        check_image_model(model, "q.onnx", allow_quantized=False)


def test_non_float_outputs_and_unreadable_files(tmp_path):
    model = image_model()
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(SwinEdgeError, match=r"non-float outputs \['y'\]"):
        check_image_model(model, "i.onnx")
    with pytest.raises(SwinEdgeError, match="'.*nope.onnx' does not exist"):
        check_image_model_file(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(SwinEdgeError, match="junk.onnx' is not a readable ONNX model"):
        check_image_model_file(tmp_path / "junk.onnx")
