import numpy as np
import onnx
import pytest

from swin_edge.errors import SwinEdgeError
from swin_edge.evaluate import Candidate, check_candidates, evaluate, infer_outputs

from .test_onnx_check import image_model


def save(tmp_path, name, **kw):
    path = tmp_path / name
    onnx.save(image_model(**kw), str(path))
    return path


def no_runner(cand):
    raise AssertionError(f"{cand.name} was run before the inputs were checked")


def cands(*paths):
    return [Candidate(p.stem, "onnxruntime", "fp32", p) for p in paths]


def test_candidates_with_other_shapes_are_refused_before_inference(tmp_path):
    ref = save(tmp_path, "ref.onnx")
    images = np.zeros((2, 3, 8, 8), np.float32)
    for name, kw, match in [
        ("classes.onnx", dict(out_shape=(1, 5)), r"outputs \[\(5,\)\].*outputs \[\(10,\)\]"),
        ("size.onnx", dict(in_shape=(1, 3, 16, 16)), r"input \(3, 16, 16\).*input \(3, 8, 8\)"),
    ]:
        other = save(tmp_path, name, **kw)
        with pytest.raises(SwinEdgeError, match=f"'.*{name}' .*{match}.*--num-classes"):
            evaluate(cands(ref, other), images, None, no_runner)
    # a dynamic-batch candidate of the same model is fine
    check_candidates(cands(ref, save(tmp_path, "dyn.onnx", in_shape=("b", 3, 8, 8))), images)


def test_non_image_missing_and_mismatched_inputs_are_refused(tmp_path):
    ref = save(tmp_path, "ref.onnx")
    images = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(SwinEdgeError, match="flat.onnx' input 'x' is float"):
        evaluate(cands(ref, save(tmp_path, "flat.onnx", in_shape=(1, 8))), images, None, no_runner)
    with pytest.raises(SwinEdgeError, match="gone.onnx' does not exist"):
        evaluate(cands(ref, tmp_path / "gone.onnx"), images, None, no_runner)
    with pytest.raises(SwinEdgeError, match=r"images are \(3, 4, 4\) each but '.*ref.onnx'"):
        evaluate(cands(ref), images[:, :, :4, :4], None, no_runner)
    with pytest.raises(SwinEdgeError, match="class index 12 but '.*ref.onnx' has 10 outputs"):
        evaluate(cands(ref), images, np.array([0, 12]), no_runner)
    with pytest.raises(SwinEdgeError, match="no models to evaluate"):
        evaluate([], images, None, no_runner)


def test_engines_are_checked_through_the_onnx_they_were_built_from(tmp_path):
    ref = save(tmp_path, "ref.onnx")
    src = save(tmp_path, "other.onnx", out_shape=(1, 7))
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"engine")
    (tmp_path / "model.int8.engine.json").write_text('{"onnx": "other.onnx"}')
    trt = Candidate("tensorrt-int8", "tensorrt", "int8", engine)
    images = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(SwinEdgeError, match=r"'.*int8.engine' .*\(7,\).*does not match .*ref.onnx"):
        check_candidates([*cands(ref), trt], images)
    src.unlink()  # source gone: the engine's own runner checks it
    check_candidates([*cands(ref), trt], images)


def test_named_outputs_are_put_in_the_onnx_order():
    class Engine:  # TensorRT's runner: outputs in the engine's order, by name
        output_names = ["stage4", "stage3"]

        def infer_all_outputs(self, images):
            return [np.full(1, 4.0), np.full(1, 3.0)]

    got = infer_outputs(Engine(), np.zeros(1), ("stage3", "stage4"))
    assert [float(o[0]) for o in got] == [3.0, 4.0]
    got = infer_outputs(Engine(), np.zeros(1), ("a", "b"))  # other names: left as they come
    assert [float(o[0]) for o in got] == [4.0, 3.0]
