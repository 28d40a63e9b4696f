import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from swin_edge.gemm_floor import GemmPeak, gemm_ops, gemm_peak


def test_gemm_ops_counts_gemm_and_batched_matmul(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 5, 5])
    w = numpy_helper.from_array(np.ones((20, 8), np.float32), "w")  # transB: (N=20, K=8)
    shape = numpy_helper.from_array(np.array([3, 2, 4, 5]), "shape")
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),  # (6, 20): 6 x 8 x 20 MACs
        helper.make_node("Reshape", ["g", "shape"], ["r"]),  # (3, 2, 4, 5)
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 1, 3, 2]),  # (3, 2, 5, 4)
        helper.make_node("MatMul", ["t", "r"], ["y"]),  # 6 x (5x4 @ 4x5) = 6 * 100 MACs
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m")
    onnx.checker.check_model(tmp_path / "m", full_check=True)
    assert gemm_ops(tmp_path / "m") == 2 * (6 * 8 * 20 + 6 * 5 * 4 * 5)


def test_floor_is_ops_over_measured_peak():
    peak = gemm_peak(threads=1, size=128, repeats=2)
    assert peak.int8_ops_per_s > 0 and peak.fp32_ops_per_s > 0
    assert peak.int8_exact_ops_per_s is None
    exact = gemm_peak(threads=1, size=128, repeats=2, exact_u8s8=True)  # u8u8 kernels on x86
    assert exact.int8_ops_per_s > 0 and exact.int8_exact_ops_per_s > 0
    assert exact.floor_ms(10**9, int8=True, exact=True) == pytest.approx(
        1e12 / exact.int8_exact_ops_per_s
    )
    with pytest.raises(ValueError, match="not measured"):
        peak.floor_ms(10**9, int8=True, exact=True)
    p = GemmPeak(1, 128, int8_ops_per_s=2e11, fp32_ops_per_s=1e11)
    assert p.floor_ms(9_000_000_000, int8=True) == 45.0
    assert p.floor_ms(9_000_000_000, int8=False) == 90.0
