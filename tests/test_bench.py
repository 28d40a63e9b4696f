import json

import pytest

from swin_edge.bench import InterleavedResult, gate, parse_percent, read_baseline
from swin_edge.cli import main
from swin_edge.errors import SwinEdgeError
from swin_edge.export import torch_to_onnx
from swin_edge.model import SwinConfig, SwinTransformer


def result(fp32, int8):
    return InterleavedResult(["fp32", "int8"], {"fp32": fp32, "int8": int8}, 1, 0, 10)


def test_ratio_is_median_of_per_round_ratios():
    # a noisy round (machine busy during both) does not move the median ratio
    r = result([50, 50, 90, 50, 50], [20, 21, 36, 20, 19])
    assert r.ratio("int8", "fp32") == pytest.approx(0.4)
    assert r.ratio_spread("int8", "fp32") == (pytest.approx(0.38), pytest.approx(0.42))


def test_gate_passes_within_threshold_and_fails_beyond():
    base = {"numerator": "int8", "denominator": "fp32", "ratio": 0.40}
    ok = gate(result([50] * 3, [21.5] * 3), base, 0.10)  # 0.43 <= 0.44
    assert ok.passed and ok.change == pytest.approx(0.075)
    bad = gate(result([50] * 3, [23.0] * 3), base, 0.10)  # 0.46 > 0.44
    assert not bad.passed
    with pytest.raises(SwinEdgeError, match="'int4' was not measured"):
        gate(result([1], [1]), dict(base, numerator="int4"), 0.1)


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("0.25", 0.25), ("0%", 0.0)])
def test_parse_percent(text, value):
    assert parse_percent(text) == pytest.approx(value)


def test_parse_percent_and_baseline_errors(tmp_path):
    with pytest.raises(SwinEdgeError, match="like 10%"):
        parse_percent("ten")
    with pytest.raises(SwinEdgeError, match="does not exist"):
        read_baseline(tmp_path / "b.json")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(SwinEdgeError, match="not a swin_edge baseline"):
        read_baseline(tmp_path / "b.json")


def test_bench_cli_gate_exit_codes(tmp_path, capsys):
    small = SwinConfig(
        img_size=32,
        patch_size=2,
        embed_dim=8,
        depths=(2,),
        num_heads=(1,),
        window_size=4,
        num_classes=3,
        name="bench",
    )
    big = SwinConfig(
        img_size=32,
        patch_size=2,
        embed_dim=32,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
        num_classes=3,
        name="bench_big",
    )
    a = torch_to_onnx(SwinTransformer(small).eval(), tmp_path / "a.onnx").path
    b = torch_to_onnx(SwinTransformer(big).eval(), tmp_path / "b.onnx").path
    base = tmp_path / "base.json"
    args = [
        "bench",
        "--onnx",
        f"fp32={b}",
        "--onnx",
        f"int8={a}",
        "--rounds",
        "3",
        "--iterations",
        "5",
        "--warmup",
        "1",
    ]
    assert main([*args, "--write-baseline", str(base)]) == 0
    measured = json.loads(base.read_text())["ratio"]
    assert 0 < measured < 1  # the small model is faster than the big one
    summary = tmp_path / "summary.md"
    assert (
        main(
            [*args, "--baseline", str(base), "--max-regression", "200%", "--summary", str(summary)]
        )
        == 0
    )
    assert "Latency gate: PASS" in summary.read_text()
    base.write_text(
        json.dumps({"numerator": "int8", "denominator": "fp32", "ratio": measured / 10})
    )
    assert main([*args, "--baseline", str(base), "--summary", str(summary)]) == 1
    assert "FAIL: latency regression" in summary.read_text()
    assert main(["bench", "--onnx", "nope"]) == 2
    assert "use NAME=PATH" in capsys.readouterr().err
