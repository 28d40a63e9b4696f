import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from swin_edge.bench import (
    InterleavedResult,
    baseline_threads,
    gate,
    gate_markdown,
    parse_percent,
    read_baseline,
    write_baseline,
)
from swin_edge.cli import main
from swin_edge.cpu import CpuInfo
from swin_edge.errors import SwinEdgeError
from swin_edge.export import torch_to_onnx
from swin_edge.model import SwinConfig, SwinTransformer
from swin_edge.quantize import QuantRecipe, quantize_onnx


def result(fp32, int8):
    return InterleavedResult(["fp32", "int8"], {"fp32": fp32, "int8": int8}, 1, 0, 10)


def test_ratio_is_median_of_per_round_ratios():
    # a noisy round (machine busy during both) does not move the median ratio
    r = result([50, 50, 90, 50, 50], [20, 21, 36, 20, 19])
    assert r.ratio("int8", "fp32") == pytest.approx(0.4)
    assert r.ratio_spread("int8", "fp32") == (pytest.approx(0.38), pytest.approx(0.42))


AMX = CpuInfo("Intel Xeon", "intel", "x86_64", ("avx2", "avx512_vnni", "amx_tile", "amx_int8"))
AVX2 = CpuInfo("AMD EPYC", "amd", "x86_64", ("avx2", "fma"))


def baseline(**classes: float) -> dict:
    return {
        "numerator": "int8",
        "denominator": "fp32",
        "classes": {k.replace("_", "-"): {"ratio": v} for k, v in classes.items()},
    }


def with_threads(base: dict, cls: str, threads) -> dict:
    base["classes"][cls]["threads"] = threads
    return base


def test_the_gate_measures_with_the_threads_of_its_baseline():
    base = with_threads(baseline(intel_amx=0.40, amd_avx2=0.64), "amd-avx2", 1)
    assert baseline_threads(base, AVX2) == 1
    assert baseline_threads(base, AMX) == 0  # recorded without a thread count: all cores
    assert baseline_threads(baseline(intel_amx=0.40), AVX2) is None


def test_gate_passes_within_threshold_and_fails_beyond():
    base = baseline(intel_amx=0.40, amd_avx2=0.64)
    ok = gate(result([50] * 3, [21.5] * 3), base, 0.10, AMX)  # 0.43 <= 0.44
    assert ok.passed and ok.change == pytest.approx(0.075)
    bad = gate(result([50] * 3, [23.0] * 3), base, 0.10, AMX)  # 0.46 > 0.44
    assert not bad.passed
    # the same 0.46 on an AVX2-only CPU is compared with that class's own 0.64
    assert gate(result([50] * 3, [23.0] * 3), base, 0.10, AVX2).passed
    with pytest.raises(SwinEdgeError, match="'int4' was not measured"):
        gate(result([1], [1]), dict(base, numerator="int4"), 0.1, AMX)


def test_gate_never_compares_across_cpu_classes():
    g = gate(result([50] * 3, [45.0] * 3), baseline(intel_amx=0.40), 0.10, AVX2)
    assert g.passed and not g.has_baseline and g.cpu_class == "amd-avx2"
    md = gate_markdown(g, "int8", "fp32", "b.json")
    assert "no baseline for CPU class `amd-avx2`" in md
    assert "--write-baseline b.json" in md and "AMD EPYC" in md


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("0.25", 0.25), ("0%", 0.0)])
def test_parse_percent(text, value):
    assert parse_percent(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{}", "not a swin_edge baseline"),
        ("[1]", "not a swin_edge baseline"),
        ("nope", "is not JSON"),
        ('{"numerator": "int8", "denominator": "fp32", "ratio": 0.5}', "old format"),
        ('{"numerator": "int8", "denominator": "fp32", "classes": []}', "must map"),
        (json.dumps(baseline(amd_avx2=0.0)), "entry 'amd-avx2' needs a ratio > 0"),
        (json.dumps(baseline(amd_avx2=float("nan"))), "needs a ratio > 0"),
        (json.dumps(with_threads(baseline(amd_avx2=0.7), "amd-avx2", -1)), "threads -1"),
        (json.dumps(with_threads(baseline(amd_avx2=0.7), "amd-avx2", "2")), "threads '2'"),
    ],
)
def test_bad_baselines_are_refused(tmp_path, content, needle):
    (tmp_path / "b.json").write_text(content)
    with pytest.raises(SwinEdgeError, match=needle):
        read_baseline(tmp_path / "b.json")


def test_parse_percent_and_missing_baseline(tmp_path):
    with pytest.raises(SwinEdgeError, match="like 10%"):
        parse_percent("ten")
    with pytest.raises(SwinEdgeError, match="does not exist"):
        read_baseline(tmp_path / "b.json")
    with pytest.raises(SwinEdgeError, match="is a folder"):
        read_baseline(tmp_path)


def test_write_baseline_adds_this_class_and_keeps_the_others(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(baseline(intel_amx=0.46)))
    assert (
        write_baseline(path, result([50] * 3, [32.0] * 3), "int8", "fp32", cpu=AVX2) == "amd-avx2"
    )
    data = read_baseline(path)
    assert data["classes"]["intel-amx"]["ratio"] == 0.46
    entry = data["classes"]["amd-avx2"]
    assert entry["ratio"] == pytest.approx(0.64) and entry["rounds"]["int8"] == [32.0] * 3
    assert entry["environment"]["cpu_class"]  # recorded with the environment
    write_baseline(path, result([50] * 3, [30.0] * 3), "int8", "fp32", cpu=AVX2)
    assert read_baseline(path)["classes"]["amd-avx2"]["ratio"] == pytest.approx(0.6)
    with pytest.raises(SwinEdgeError, match="gates int8/fp32, not int8/fp16"):
        write_baseline(path, result([1], [1]), "int8", "fp16", cpu=AVX2)


def test_committed_baseline_is_valid_and_marks_seeded_entries():
    data = read_baseline(Path(__file__).parent.parent / "benchmarks" / "ci_baseline.json")
    assert (data["numerator"], data["denominator"]) == ("int8", "fp32")
    for key, entry in data["classes"].items():
        assert entry["environment"]["cpu_class"] == key
        assert entry["rounds"] or "SEEDED" in entry["note"]


def _slow_gemm_inputs(src: Path, dst: Path) -> Path:
    """A real slowdown on every CPU kind: each GEMM's input first goes through a float MatMul
    with a square matrix (GEMM work in float roughly doubles), which also stops ONNX Runtime from
    running the GEMMs in int8 (the DequantizeLinear no longer feeds them)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    dims = {  # float tensors' shapes
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.input)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    rng = np.random.default_rng(0)
    nodes = []
    for n in model.graph.node:
        if n.op_type in ("Gemm", "MatMul") and n.input[0] in dims:
            x = n.input[0]
            k = dims[x][-1]
            square = (rng.standard_normal((k, k)) / np.sqrt(k)).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(square, f"{x}/square"))
            nodes.append(helper.make_node("MatMul", [x, f"{x}/square"], [f"{x}/slow"]))
            n.input[0] = f"{x}/slow"
        nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def gate_models(tmp_path_factory):
    """FP32 and cpu-recipe INT8 of a Swin small enough for a test, large enough (1024 tokens x
    64 channels) that GEMMs dominate its time, as in Swin-T."""
    work = tmp_path_factory.mktemp("gate")
    cfg = SwinConfig(
        img_size=64,
        patch_size=2,
        embed_dim=64,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
        num_classes=10,
        name="gate_test",
    )
    torch.manual_seed(0)
    fp32 = torch_to_onnx(SwinTransformer(cfg).eval(), work / "fp32.onnx", verify=False).path
    images = np.random.default_rng(0).standard_normal((8, 3, 64, 64)).astype(np.float32)
    int8 = quantize_onnx(fp32, work / "int8.onnx", images, QuantRecipe(target="cpu")).path
    return fp32, int8, _slow_gemm_inputs(int8, work / "int8-slow.onnx")


def test_gate_fails_an_injected_regression_and_passes_unchanged_code(tmp_path, gate_models):
    fp32, int8, slow = gate_models
    base = tmp_path / "base.json"
    timing = ["--rounds", "9", "--iterations", "20", "--warmup", "3"]
    pair = ["bench", "--onnx", f"fp32={fp32}", "--onnx", f"int8={int8}", *timing]
    # one thread, as the amd-avx512vnni entry: two threads of a shared host are bimodal there
    assert main([*pair, "--threads", "1", "--write-baseline", str(base)]) == 0
    summary = tmp_path / "summary.md"
    # 40%: room for a shared machine's noise on a small model, while the injected regression
    # multiplies the 1-thread ratio by 3.7-4.0 with VNNI and 2.4 on the AVX2 code path (measured)
    gate_args = ["--baseline", str(base), "--max-regression", "40%", "--summary", str(summary)]
    for _ in range(3):  # unchanged code passes, run after run
        assert main([*pair, *gate_args]) == 0, summary.read_text()
        assert "Latency gate: PASS" in summary.read_text()
    slowed = ["bench", "--onnx", f"fp32={fp32}", "--onnx", f"int8={slow}", *timing]
    assert main([*slowed, *gate_args]) == 1
    assert "FAIL: latency regression" in summary.read_text()


def test_bench_cli_gate_exit_codes(tmp_path, capsys, gate_models):
    fp32, int8, _ = gate_models
    base = tmp_path / "base.json"
    args = ["bench", "--onnx", f"fp32={fp32}", "--onnx", f"int8={int8}"]
    args += ["--rounds", "3", "--iterations", "5", "--warmup", "1"]
    assert main([*args, "--write-baseline", str(base)]) == 0
    data = json.loads(base.read_text())
    (entry,) = data["classes"].values()
    assert entry["ratio"] > 0 and entry["environment"]["cpu_class"]
    data["classes"] = {"some-other-class": entry}  # only another class has a baseline
    base.write_text(json.dumps(data))
    summary = tmp_path / "summary.md"
    assert main([*args, "--baseline", str(base), "--summary", str(summary)]) == 0
    assert "no baseline for CPU class" in summary.read_text()
    assert main(["bench", "--onnx", "nope"]) == 2
    assert "use NAME=PATH" in capsys.readouterr().err


def test_bench_cli_gate_uses_its_baselines_threads(tmp_path, capsys, gate_models):
    fp32, int8, _ = gate_models
    base = tmp_path / "base.json"
    args = ["bench", "--onnx", f"fp32={fp32}", "--onnx", f"int8={int8}"]
    args += ["--rounds", "2", "--iterations", "3", "--warmup", "1"]
    assert main([*args, "--threads", "1", "--write-baseline", str(base)]) == 0
    (entry,) = json.loads(base.read_text())["classes"].values()
    assert entry["threads"] == 1
    capsys.readouterr()
    assert main([*args, "--baseline", str(base), "--max-regression", "900%"]) == 0
    assert "3 runs, 1 thread(s)" in capsys.readouterr().out  # as recorded, not all cores
    assert main([*args, "--baseline", str(base), "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads 0:" in err and "recorded on this CPU class with 1 thread(s)" in err
