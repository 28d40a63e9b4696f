"""Minimal reproduction (not a test) of an OpenVINO CPU accuracy problem our Swin exports hit.

LayerNorm -> Reshape(-1, L, C) -> Gather(axis=1) -> Reshape(-1, C) -> LayerNorm -> Q/DQ (uint8)
with a symbolic batch: OpenVINO's CPU plugin returns values up to ~30 quantization steps away
from ONNX Runtime's (and from numpy's Q/DQ of the exact LayerNorm). The same graph with a static
batch, or with the model reshaped to a static batch before compiling, or without the Q/DQ, or
without the first LayerNorm, agrees to one step (rounding). Our Swin export had this chain
after ``patch_embed.norm`` (and a similar one, norm -> Reshape -> ReduceMean -> quantizer, at the
head), so OpenVINO running its Q/DQ INT8 model with a dynamic batch lost ~25 dB of output SQNR;
the model now reorders tokens before that norm, and a dynamic-batch export norms (B, L, C)
before pooling. NNCF's own recipe still trips on it, and the CPU runtime selection's fidelity
rule keeps such a candidate from being deployed. Seen with OpenVINO 2026.4.1 on an AMD EPYC
with AVX-512 VNNI (class ``amd-avx512vnni``); a similar report (quantized LayerNorm with
dynamic shapes): openvinotoolkit/openvino#19134. Run this to check another version or CPU:

    python scripts/openvino_dynamic_batch_repro.py
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import TensorProto, helper, numpy_helper

B, L, C = 8, 256, 32  # a Swin stage: 8 images of 16x16 tokens, 32 channels
SCALE, ZERO = np.float32(0.0203), np.uint8(135)


def model(dynamic: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    g1, g2 = (0.6 + 0.3 * rng.random((2, C))).astype(np.float32)
    b1, b2 = (0.1 * rng.normal(size=(2, C))).astype(np.float32)
    perm = rng.permutation(L).astype(np.int64)  # a window partition is a token permutation
    n = -1 if dynamic else B
    inits = {
        "g1": g1, "b1": b1, "g2": g2, "b2": b2, "perm": perm,
        "s3": np.array([n, L, C], np.int64), "s2": np.array([n if n < 0 else B * L, C], np.int64),
        "scale": np.array(SCALE), "zero": np.array(ZERO),
    }  # fmt: skip
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g1", "b1"], ["ln1"], axis=-1),
        helper.make_node("Reshape", ["ln1", "s3"], ["r3"]),
        helper.make_node("Gather", ["r3", "perm"], ["g"], axis=1),
        helper.make_node("Reshape", ["g", "s2"], ["r2"]),
        helper.make_node("LayerNormalization", ["r2", "g2", "b2"], ["ln2"], axis=-1),
        helper.make_node("QuantizeLinear", ["ln2", "scale", "zero"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"]),
    ]
    rows = "n" if dynamic else B * L
    graph = helper.make_graph(
        nodes,
        "repro",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, C])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, C])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    x = (np.random.default_rng(1).normal(size=(B * L, C)) * 3 + 1).astype(np.float32)
    core = ov.Core()
    props = {ov.properties.hint.inference_precision: ov.Type.f32}
    print(f"OpenVINO {ov.get_version()}, ONNX Runtime {ort.__version__}")
    for dynamic, reshape in ((False, False), (True, False), (True, True)):
        m = model(dynamic)
        ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        want = ref.run(None, {"x": x})[0]
        ovm = core.read_model(m.SerializeToString(), b"")
        if reshape:
            ovm.reshape([B * L, C])
        got = core.compile_model(ovm, "CPU", props)({0: x})[0]
        steps = float(np.abs(np.asarray(got) - want).max() / SCALE)
        what = "static" if not dynamic else "dynamic batch" + (", reshaped" if reshape else "")
        print(f"{what:36s} max |OpenVINO - ONNX Runtime| = {steps:5.1f} quantization steps")


if __name__ == "__main__":
    main()
