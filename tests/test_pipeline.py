import dataclasses
import json
import shutil

import onnx
import pytest

from swin_edge.calibration import default_calibration_dir
from swin_edge.cli import main
from swin_edge.errors import SwinEdgeError
from swin_edge.pipeline import BuildConfig, build, resolve_target

SMALL = dict(
    model="swin_tiny",
    img_size=64,
    window_size=2,
    num_classes=5,
    iterations=3,
    warmup=1,
    num_calib=6,
)


@pytest.fixture(scope="module")
def labeled_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    photos = sorted(default_calibration_dir().glob("*.jpg"))
    for i, cls in enumerate(["a", "b"]):
        (root / cls).mkdir()
        for p in photos[i * 3 : i * 3 + 3]:
            shutil.copy(p, root / cls)
    return root


def test_build_int8_cpu_writes_complete_report(tmp_path, labeled_dir):
    res = build(
        BuildConfig(
            precision="int8",
            target="cpu",
            eval_dir=str(labeled_dir),
            out=str(tmp_path / "run"),
            **SMALL,
        ),
        progress=False,
    )
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    sel = report["runtime_selection"]
    chosen = sel["chosen"]
    assert {c["precision"] for c in sel["candidates"]} == {"int8"}  # never another precision
    assert {(c["runtime"], c["variant"]) for c in sel["candidates"]} >= {
        ("ort", "lowered"),
        ("ort", "as-written"),
    }
    # every candidate was run on the eval images against FP32; the choice is the fastest of
    # those within --max-sqnr-drop of the most faithful one (or above 40 dB)
    sqnr = {c["key"]: c["fidelity"]["sqnr_db"] for c in sel["candidates"]}
    bar = min(40.0, max(sqnr.values()) - sel["benchmark"]["max_sqnr_drop_db"])
    faithful = [c for c in sel["candidates"] if sqnr[c["key"]] >= bar]
    assert [c for c in sel["candidates"] if "rejected" in c] == [
        c for c in sel["candidates"] if c not in faithful
    ]
    fastest = min(faithful, key=lambda c: c["median_p50_ms"])
    assert chosen["key"] == fastest["key"] and fastest["latency_vs_chosen"] == 1.0
    assert sel["benchmark"]["check_images"] == min(8, report["data"]["count"])
    left_out = [n for n in report["notes"] if "not deployed for their fidelity" in n]
    assert len(left_out) == (len(faithful) < len(sel["candidates"]))
    ir = []  # OpenVINO IR of the deployed model, and OpenVINO's own recipe when that won
    lowered = chosen["variant"] in ("lowered", "lowered-7bit")
    seven = chosen["variant"].endswith("-7bit")  # only on CPUs whose u8s8 kernels clamp
    if seven:
        ir = ["model.int8-cpu7.onnx"]
    if lowered:  # the lowered file only where the lowering won
        ir += ["model.int8-cpu.ort.onnx"]
    elif chosen["variant"] == "int8-nncf":
        ir = [f"model.int8-openvino.{x}" for x in ("onnx", "xml", "bin")]
    elif chosen["runtime"] == "openvino":
        ir = ["model.int8-cpu.bin", "model.int8-cpu.xml"]
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == sorted(
        [
            "deploy.json",
            "model.int8-cpu.onnx",
            "model.onnx",
            "report.json",
            "report.md",
            "report.png",
            *ir,
        ]
    )
    if lowered:
        lowered_file = tmp_path / "run" / res.artifacts["onnx_int8_ort"]
        ort_ops = {n.op_type for n in onnx.load(str(lowered_file)).graph.node}
        assert "MatMulIntegerToFloat" in ort_ops and "Gemm" not in ort_ops
    else:
        assert "onnx_int8_ort" not in res.artifacts
    backend = "onnxruntime" if chosen["runtime"] == "ort" else "openvino"
    assert [r["name"] for r in report["results"]] == ["onnxruntime-fp32", f"{backend}-int8"]
    int8 = report["results"][1]
    assert int8["accuracy"]["count"] == 6 and 0 <= int8["accuracy"]["top1"] <= 1
    assert int8["fidelity"]["cosine"] > 0.9 and int8["worst_layers"]
    recipe_target = "openvino" if chosen["variant"] == "int8-nncf" else "cpu"
    assert int8["latency"]["p50_ms"] > 0 and int8["recipe"]["target"] == recipe_target
    assert int8["recipe"].get("gemm_input_bits", 8) == (7 if seven else 8)
    assert report["data"]["labeled"] and report["data"]["classes"] == ["a", "b"]
    assert report["calibration"]["count"] == 6 and len(report["calibration"]["sha256"]) == 64
    md = (tmp_path / "run" / "report.md").read_text()
    assert f"| {backend}-int8 | {backend} | int8 |" in md and "top-1" in md
    assert "CPU runtime selection on" in md and f"**{chosen['key']}**" in md
    assert "| SQNR vs FP32 |" in md and f"{sqnr[chosen['key']]:.1f} dB |" in md
    assert (int8["runtime"].get("lowered_gemms", 0) > 0) is lowered
    assert ("Gemms lowered to ONNX Runtime's" in md) is lowered
    assert (tmp_path / "run" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.target == "cpu"


def test_cpu_target_refuses_fp16_and_missing_tensorrt_is_explained():
    with pytest.raises(SwinEdgeError, match="fp16 needs TensorRT"):
        resolve_target("cpu", "fp16")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(SwinEdgeError, match="pip install 'swin_edge\\[tensorrt\\]'"):
            resolve_target("tensorrt", "int8")


def test_build_cli_bad_eval_dir_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["build", "--eval-dir", str(tmp_path / "nope"), "--out", str(out), "--no-progress"])
        == 2
    )
    err = capsys.readouterr().err
    assert "image folder" in err and "does not exist" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_static_batch_larger_than_sample_and_too_many_classes(tmp_path, labeled_dir):
    res = build(
        BuildConfig(
            precision="int8",
            target="cpu",
            batch=16,
            num_eval=6,
            out=str(tmp_path / "b16"),
            runtime="ort",  # the runtime selection is tested elsewhere
            threads=1,
            **SMALL,
        ),
        progress=False,
    )
    assert res.report["model"]["input_shape"][0] == 16
    assert res.report["results"][1]["worst_layers"]
    with pytest.raises(SwinEdgeError, match="class index 1 but .* has 1 outputs"):
        build(
            BuildConfig(
                precision="fp32",
                target="cpu",
                eval_dir=str(labeled_dir),
                out=str(tmp_path / "c"),
                **dict(SMALL, num_classes=1),
            ),
            progress=False,
        )


def test_build_pinned_to_openvino_checks_layers_in_openvino(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from swin_edge import layerwise

    runtimes = []
    real = layerwise.per_layer_sqnr

    def spy(fp32, int8, images, threads=0, runtime="ort"):
        runtimes.append((runtime, int8.name))
        return real(fp32, int8, images, threads, runtime)

    monkeypatch.setattr(layerwise, "per_layer_sqnr", spy)
    cfg = BuildConfig(target="cpu", runtime="openvino", threads=1, rounds=1, out=str(tmp_path))
    build(dataclasses.replace(cfg, **SMALL), progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    chosen = report["runtime_selection"]["chosen"]
    assert chosen["runtime"] == "openvino" and chosen["model"].endswith(".xml")
    deployed = (
        "model.int8-openvino.onnx" if chosen["variant"] == "int8-nncf" else "model.int8-cpu.onnx"
    )
    assert runtimes == [("openvino", deployed)]  # the deployed model, in the deployed runtime
    assert report["results"][1]["name"] == "openvino-int8" and report["results"][1]["worst_layers"]


def test_build_offers_seven_bit_gemm_inputs_where_u8s8_kernels_clamp(
    tmp_path, monkeypatch, avx2_cpu
):
    """On a CPU without VNNI/AMX (faked here) the build also times the cpu recipe with 7-bit
    GEMM inputs; when it wins (made faster here) its model is what the run folder deploys."""
    from swin_edge import runtime_select
    from swin_edge.quantize.u8s8_safe import gemm_input_bits

    real = runtime_select.measure

    def seven_faster(candidates, *args, **kwargs):
        m = real(candidates, *args, **kwargs)
        for key, p50s in m.timings.items():
            if "-7bit/" in key:
                m.timings[key] = [v * 0.25 for v in p50s]
        return m

    monkeypatch.setattr(runtime_select, "measure", seven_faster)
    cfg = BuildConfig(target="cpu", runtime="ort", threads=1, rounds=1, out=str(tmp_path / "r"))
    res = build(dataclasses.replace(cfg, **SMALL), progress=False)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    sel = report["runtime_selection"]
    keys = {c["key"] for c in sel["candidates"]}
    assert keys == {
        f"ort/{v}/1t" for v in ("lowered", "as-written", "lowered-7bit", "as-written-7bit")
    }
    assert sel["cpu"]["u8s8_saturates"] and sel["chosen"]["variant"].endswith("-7bit")
    seven = tmp_path / "r" / "model.int8-cpu7.onnx"
    assert res.artifacts["onnx_int8_7bit"] == str(seven)
    assert gemm_input_bits(onnx.load(str(seven))) == 7
    deployed = seven
    if sel["chosen"]["variant"] == "lowered-7bit":  # the lowering of the 7-bit model
        deployed = tmp_path / "r" / "model.int8-cpu.ort.onnx"
        assert gemm_input_bits(onnx.load(str(deployed))) == 7
    int8 = report["results"][1]
    assert int8["recipe"]["gemm_input_bits"] == 7 and int8["runtime"]["exact_u8s8"] is False
    assert int8["fidelity"]["cosine"] > 0.9
    md = (tmp_path / "r" / "report.md").read_text()
    assert "ran the 8-bit model with its exact u8u8 kernels" in md
    assert "The `-7bit` variants are the same recipe with 7-bit GEMM inputs" in md
    assert all(c["fidelity"]["cosine"] > 0.9 for c in sel["candidates"])
    from swin_edge.runtime_select import load_deployed

    with load_deployed(tmp_path / "r", warn=False) as runner:
        assert runner.model_path == seven and not runner.exact_u8s8


def test_a_model_the_7_bit_pass_refuses_builds_with_8_bits_only(tmp_path, monkeypatch, avx2_cpu):
    from swin_edge.quantize import u8s8_safe

    def refuse(src, dst):
        raise SwinEdgeError("gemm_7: its input codes do not come from a QuantizeLinear")

    monkeypatch.setattr(u8s8_safe, "narrow_file", refuse)
    cfg = BuildConfig(target="cpu", runtime="ort", threads=1, rounds=1, out=str(tmp_path / "r"))
    build(dataclasses.replace(cfg, **SMALL), progress=False)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    variants = {c["variant"] for c in report["runtime_selection"]["candidates"]}
    assert variants == {"lowered", "as-written"}
    assert any("no 7-bit GEMM-input candidate: gemm_7" in n for n in report["notes"])
    assert not (tmp_path / "r" / "model.int8-cpu7.onnx").exists()
