import copy

import pytest
from PIL import Image

from swin_edge.errors import SwinEdgeError
from swin_edge.report import load_report, render_markdown, write_report

LAT = dict(
    batch_size=1,
    iterations=20,
    warmup=5,
    mean_ms=0,
    p50_ms=50.0,
    p90_ms=52.0,
    p99_ms=55.0,
    min_ms=49.0,
    throughput=20.0,
)
REPORT = {
    "model": {"name": "swin_tiny", "input_shape": [1, 3, 224, 224]},
    "data": {"source": "imgs", "count": 10},
    "environment": {"cpu": "x"},
    "results": [
        dict(
            name="onnxruntime-fp32",
            backend="onnxruntime",
            precision="fp32",
            size_mb=110.0,
            latency=LAT,
            accuracy=None,
            fidelity=None,
            worst_layers=[],
        ),
        dict(
            name="onnxruntime-int8",
            backend="onnxruntime",
            precision="int8",
            size_mb=30.0,
            latency=dict(LAT, p50_ms=20.0, p90_ms=21.0, p99_ms=22.0, throughput=50.0),
            accuracy=None,
            worst_layers=[["layers.3/MatMul_0", 21.5]],
            fidelity=dict(top1_agreement=0.98, top5_overlap=0.97, cosine=0.9991, sqnr_db=31.2),
        ),
    ],
}


def test_markdown_unlabeled_shows_fidelity_and_speedup():
    md = render_markdown(REPORT)
    assert "no labels: fidelity against FP32" in md
    assert "| onnxruntime-int8 | onnxruntime | int8 | 20.00 | 21.00 | 22.00 | 50.0 | 2.50x |" in md
    assert "0.9800 | 0.9700 | 0.99910 | 31.2 |" in md and "layers.3/MatMul_0: 21.5 dB" in md


def test_markdown_labeled_has_top1_top5_columns():
    rep = copy.deepcopy(REPORT)
    rep["results"][0]["accuracy"] = dict(top1=0.81, top5=0.95, count=10)
    rep["results"][1]["accuracy"] = dict(top1=0.80, top5=0.95, count=10)
    md = render_markdown(rep)
    assert "| top-1 | top-5 |" in md and "| 0.8000 | 0.9500 |" in md


def test_write_report_and_chart(tmp_path):
    paths = write_report(REPORT, tmp_path)
    with Image.open(paths["png"]) as img:
        assert img.size[0] > 600 and img.size[1] > 200
    assert load_report(paths["json"])["results"][1]["name"] == "onnxruntime-int8"


def test_report_command_takes_the_run_folder_or_its_json(tmp_path, capsys):
    from swin_edge.cli import main

    write_report(REPORT, tmp_path)
    (tmp_path / "report.md").unlink()
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").is_file()
    assert main(["report", str(tmp_path / "report.json"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "report.png").is_file()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2  # a folder without report.json
    assert "empty/report.json' does not exist; pass a build run" in capsys.readouterr().err


def test_an_exact_layer_round_trips_through_strict_json(tmp_path):
    rep = copy.deepcopy(REPORT)
    rep["results"][1]["worst_layers"].append(["patch_embed.proj/Conv_0", float("inf")])
    assert "patch_embed.proj/Conv_0: exact" in render_markdown(rep)
    paths = write_report(rep, tmp_path)
    assert "Infinity" not in paths["json"].read_text()
    again = render_markdown(load_report(paths["json"]))  # `report` re-renders from the JSON
    assert "patch_embed.proj/Conv_0: exact" in again and "layers.3/MatMul_0: 21.5 dB" in again


def test_load_report_errors(tmp_path):
    with pytest.raises(SwinEdgeError, match="does not exist"):
        load_report(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": []}')
    with pytest.raises(SwinEdgeError, match="not a swin_edge report"):
        load_report(bad)


@pytest.mark.parametrize("saturates", [True, False])
def test_selection_says_when_onnx_runtime_ran_its_exact_kernels(saturates):
    cand = dict(runtime="ort", variant="as-written", precision="int8", threads=1, model="m")
    sel = {
        "precision": "int8",
        "cpu": {"model": "AMD EPYC", "class": "amd-avx2", "u8s8_saturates": saturates},
        "chosen": dict(cand, key="ort/as-written/1t"),
        "candidates": [{"candidate": cand, "median_p50_ms": 90.0, "latency_vs_chosen": 1.0}],
    }
    md = render_markdown(dict(REPORT, runtime_selection=sel))
    assert "**ort/as-written/1t** deployed" in md
    assert ("exact u8u8 kernels" in md) is saturates
