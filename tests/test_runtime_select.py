import json
import sys

import numpy as np
import pytest

from swin_edge import runtime_select as rs
from swin_edge.backends.onnxrt import OnnxrtRunner
from swin_edge.backends.openvino import OpenvinoRunner, openvino_available
from swin_edge.backends.timing import LatencyStats
from swin_edge.cpu import CpuInfo
from swin_edge.errors import MissingDependencyError, SwinEdgeError
from swin_edge.runtime_select import (
    CpuCandidate,
    cpu_candidates,
    make_runner,
    read_deploy_manifest,
    select,
    write_deploy_manifest,
)

AMX = CpuInfo(
    "Intel Xeon", "intel", "x86_64", ("avx2", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16")
)
AVX2 = CpuInfo("AMD EPYC", "amd", "x86_64", ("avx2", "fma"))


def cands(precision="int8", cores=2, ov=True, bf16=True, runtime=None, threads=None):
    return cpu_candidates(
        precision,
        "/m/fp32.onnx",
        "/m/int8.onnx",
        cores=cores,
        openvino_available=ov,
        has_bf16=bf16,
        runtime=runtime,
        threads=threads,
    )


def fake_timings(candidates, fastest, base=20.0):
    """Per-round p50s: every candidate at ``base`` ms +/- noise, ``fastest`` at 0.8x."""
    noise = [1.0, 1.3, 0.98, 1.02, 1.0]  # round 2 was a busy spell for everyone
    out = {}
    for i, c in enumerate(candidates):
        scale = 0.8 if c.key == fastest else 1.0 + 0.01 * (i + 1)
        out[c.key] = [base * scale * n for n in noise]
    return out


def test_thread_counts():
    assert rs.thread_counts(1) == (1,)
    assert rs.thread_counts(2) == (1, 2)
    assert rs.thread_counts(6) == (1, 2, 4, 6)
    assert rs.thread_counts(16) == (1, 2, 4, 8, 16)


@pytest.mark.parametrize(
    "precision, expected",
    [
        ("int8", {("ort", "lowered"), ("ort", "as-written"), ("openvino", "int8")}),
        ("fp32", {("ort", "f32"), ("openvino", "f32")}),
        ("bf16", {("openvino", "bf16")}),
    ],
)
def test_candidates_stay_within_the_precision(precision, expected):
    cs = cands(precision)
    assert {(c.runtime, c.variant) for c in cs} == expected
    assert {c.precision for c in cs} == {precision}
    assert {c.threads for c in cs} == {1, 2}
    model = "/m/int8.onnx" if precision == "int8" else "/m/fp32.onnx"
    assert {c.model for c in cs} == {model}
    assert len({c.key for c in cs}) == len(cs) == 2 * len(expected)


def test_bf16_only_with_hardware_bf16():
    assert all(c.precision != "bf16" for p in ("int8", "fp32") for c in cands(p, bf16=True))
    with pytest.raises(SwinEdgeError, match="bf16 needs a CPU with AMX-BF16 or AVX512-BF16"):
        cands("bf16", bf16=False)
    with pytest.raises(SwinEdgeError, match="OpenVINO only"):
        cands("bf16", runtime="ort")
    with pytest.raises(SwinEdgeError, match="no CPU candidate runs bf16 as ort/f32"):
        CpuCandidate("ort", "f32", "bf16", 1, "m.onnx")


def test_pinning_a_runtime():
    assert {c.runtime for c in cands("int8", runtime="ort")} == {"ort"}
    assert {(c.runtime, c.variant) for c in cands("fp32", runtime="openvino")} == {
        ("openvino", "f32")
    }
    assert {c.threads for c in cands("int8", threads=[2, 2, 1], cores=8)} == {1, 2}
    with pytest.raises(SwinEdgeError, match="--runtime 'tensorrt'"):
        cands("int8", runtime="tensorrt")
    with pytest.raises(SwinEdgeError, match="--precision 'fp16'"):
        cands("fp16")
    with pytest.raises(SwinEdgeError, match="need the Q/DQ INT8 model"):
        cpu_candidates("int8", "/m/fp32.onnx", None, cores=1, openvino_available=False)


def test_openvino_absent():
    # auto selection quietly falls back to ONNX Runtime ...
    assert {c.runtime for c in cands("int8", ov=False)} == {"ort"}
    # ... but asking for OpenVINO (or bf16, which only it runs) says how to install it
    for precision, runtime in (("int8", "openvino"), ("bf16", None)):
        with pytest.raises(MissingDependencyError, match=r"pip install 'swin_edge\[openvino\]'"):
            cands(precision, ov=False, runtime=runtime)


def test_openvino_import_failure_is_a_missing_dependency(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert not openvino_available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'swin_edge\[openvino\]'"):
        OpenvinoRunner(tmp_path / "m.onnx").activate()
    with pytest.raises(MissingDependencyError, match="--runtime openvino needs OpenVINO"):
        cpu_candidates("fp32", "m.onnx", cores=1, runtime="openvino")


@pytest.mark.parametrize("fastest", ["ort/as-written/1t", "ort/lowered/2t", "openvino/int8/2t"])
def test_select_picks_the_fastest(fastest):
    cs = cands("int8")
    sel = select(cs, fake_timings(cs, fastest))
    assert sel.chosen.key == fastest and sel.precision == "int8"
    assert [r.candidate.key for r in sel.results][0] == fastest
    assert sel.results[0].vs_chosen == 1.0
    assert all(r.vs_chosen > 1.2 for r in sel.results[1:])
    medians = [r.median_ms for r in sel.results]
    assert medians == sorted(medians)


def test_select_uses_the_median_round_and_breaks_ties_deterministically():
    cs = cands("int8")
    # one awful round does not lose the fastest candidate the choice
    t = {c.key: [10.0, 10.0, 10.0] for c in cs}
    t["openvino/int8/2t"] = [9.0, 50.0, 9.0]
    assert select(cs, t).chosen.key == "openvino/int8/2t"
    # exact ties: fewer threads, then ONNX Runtime, then lowered before as-written
    tie = {c.key: [10.0, 10.0] for c in cs}
    assert select(cs, tie).chosen.key == "ort/lowered/1t"
    assert select(list(reversed(cs)), tie).chosen.key == "ort/lowered/1t"
    tie2 = {k: v for k, v in tie.items() if not k.endswith("1t")}
    assert select(cs, tie2).chosen.key == "ort/lowered/2t"


def test_select_skips_untimed_and_refuses_mixed_or_bad_input():
    cs = cands("int8")
    t = fake_timings(cs, "ort/lowered/2t")
    del t["openvino/int8/2t"]
    sel = select(cs, t, errors={"openvino/int8/2t": "cannot compile"})
    last = sel.results[-1]
    assert last.candidate.key == "openvino/int8/2t" and last.error == "cannot compile"
    assert last.median_ms is None and sel.chosen.key == "ort/lowered/2t"
    with pytest.raises(SwinEdgeError, match="no CPU runtime candidate could be timed"):
        select(cs, {})
    with pytest.raises(SwinEdgeError, match="mix precisions"):
        select(cs + cands("fp32"), fake_timings(cs, "ort/lowered/1t"))
    with pytest.raises(SwinEdgeError, match="finite and > 0"):
        select(cs, {cs[0].key: [float("nan")]})
    with pytest.raises(SwinEdgeError, match="no CPU runtime candidates"):
        select([], {})


def test_make_runner_configures_the_chosen_runtime():
    runners = {c.key: make_runner(c) for c in cands("int8") + cands("bf16")}
    low, asw = runners["ort/lowered/2t"], runners["ort/as-written/1t"]
    assert isinstance(low, OnnxrtRunner) and low.config.lower_int8 and low.config.threads == 2
    assert isinstance(asw, OnnxrtRunner) and not asw.config.lower_int8
    ov, bf = runners["openvino/int8/1t"], runners["openvino/bf16/2t"]
    assert isinstance(ov, OpenvinoRunner) and ov.config.precision == "f32"
    assert ov.config.threads == 1 and str(ov.model_path) == "/m/int8.onnx"
    assert bf.config.precision == "bf16" and bf.config.num_streams == 1


class FakeRunner:
    """Latency set per model; ``activate`` fails for a model named 'broken'."""

    log: list[str] = []

    def __init__(self, c: CpuCandidate) -> None:
        self.c = c

    def activate(self) -> None:
        if "broken" in self.c.model:
            raise SwinEdgeError(f"'{self.c.model}' cannot load")

    def benchmark(self, iterations: int, warmup: int) -> LatencyStats:
        FakeRunner.log.append(self.c.key)
        ms = 5.0 if self.c.runtime == "openvino" else 10.0 / self.c.threads
        return LatencyStats.from_samples([ms] * iterations, 1, warmup)

    def __exit__(self, *exc) -> None:
        pass


def fid(sqnr):
    return {"top1_agreement": 1.0, "top5_overlap": 1.0, "cosine": 0.999, "sqnr_db": sqnr}


def test_select_never_deploys_an_unfaithful_candidate():
    cs = cands("int8")
    t = fake_timings(cs, "openvino/int8/2t")
    f = {c.key: fid(38.0) for c in cs}
    f["openvino/int8/2t"] = fid(11.5)  # OpenVINO's dynamic-batch error, as measured
    f["openvino/int8/1t"] = fid(30.6)  # another recipe: 7.4 dB below, within the limit
    sel = select(cs, t, fidelity=f, benchmark={"rounds": 5})
    assert sel.chosen.key != "openvino/int8/2t"
    assert sel.chosen.key == min(
        (k for k in t if k != "openvino/int8/2t"), key=lambda k: sorted(t[k])[2]
    )
    bad = next(r for r in sel.results if r.candidate.key == "openvino/int8/2t")
    assert bad.vs_chosen < 1.0 and bad.median_ms is not None  # faster, timed, still refused
    assert "SQNR 11.5 dB" in bad.rejected and "26.5 dB below" in bad.rejected
    assert "--max-sqnr-drop 10 dB" in bad.rejected
    assert sel.results[-1] is bad  # listed after every faithful candidate
    assert all(r.rejected is None for r in sel.results[:-1])
    assert sel.benchmark == {"rounds": 5, "max_sqnr_drop_db": 10.0}
    # a looser rule lets it win; no fidelity at all is the plain speed choice
    assert select(cs, t, fidelity=f, max_sqnr_drop_db=30).chosen.key == "openvino/int8/2t"
    assert select(cs, t).chosen.key == "openvino/int8/2t"
    with pytest.raises(SwinEdgeError, match="--max-sqnr-drop -1"):
        select(cs, t, fidelity=f, max_sqnr_drop_db=-1)


def test_select_keeps_every_candidate_above_the_always_good_sqnr():
    cs = cands("fp32")  # ORT's own FP32 is exact against the ORT reference: inf dB
    t = fake_timings(cs, "openvino/f32/2t")
    f = {c.key: fid(float("inf") if c.runtime == "ort" else 45.0) for c in cs}
    sel = select(cs, t, fidelity=f)
    assert sel.chosen.key == "openvino/f32/2t" and not any(r.rejected for r in sel.results)
    f["openvino/f32/2t"] = fid(35.0)  # under 40 dB and far below the best: refused
    assert select(cs, t, fidelity=f).chosen.key != "openvino/f32/2t"


def test_a_pinned_runtime_is_held_to_the_other_runtimes_fidelity():
    cs = cands("int8", runtime="openvino")
    t = fake_timings(cs, "openvino/int8/2t")
    f = {c.key: fid(11.5) for c in cs}
    f["openvino/int8-nncf/1t"] = f["openvino/int8-nncf/2t"] = fid(9.4)
    assert select(cs, t, fidelity=f).chosen.key == "openvino/int8/2t"  # nothing to compare
    base = {"ort/as-written": fid(38.2)}  # ONNX Runtime on the same file: not a candidate
    with pytest.raises(SwinEdgeError, match="no int8 candidate is faithful enough") as e:
        select(cs, t, fidelity=f | base)
    assert "26.7 dB below ort/as-written" in str(e.value) and "static batch" in str(e.value)
    f = {c.key: fid(36.0) for c in cs}  # faithful: chosen, the baseline recorded
    sel = select(cs, t, fidelity=f | base, benchmark={"rounds": 5})
    assert sel.chosen.key == "openvino/int8/2t" and not any(r.rejected for r in sel.results)
    assert sel.benchmark["baseline_fidelity"] == base


def test_check_outputs_refuses_non_finite_and_scores_the_rest():
    ref = [np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)]
    close = [ref[0] + 0.001]
    far = [ref[0] * 0.5 + 1.0]
    nan = [np.array([[np.nan, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)]
    m = rs.Measurement(
        {"a": [1.0], "b": [2.0], "c": [3.0], "e": [4.0]},
        {"d": "cannot load"},
        {"rounds": 1},
        {"a": close, "b": far, "c": nan, "e": [ref[0].copy()]},
    )
    timings, errors, f = rs.check_outputs(m, ["logits"], ref)
    assert set(timings) == {"a", "b", "e"} and set(f) == {"a", "b", "e"}
    assert errors == {"d": "cannot load", "c": "non-finite outputs on the check images"}
    assert f["a"]["sqnr_db"] > 60 > f["b"]["sqnr_db"] and f["a"]["top1_agreement"] == 1.0
    # identical outputs are exact, not an infinite SQNR (which JSON cannot hold), and the best
    assert f["e"]["exact"] and f["e"]["sqnr_db"] is None
    json.dumps(f, allow_nan=False)
    assert set(rs.unfaithful(f, 10.0)) == {"b"} and "below e (inf dB" in rs.unfaithful(f)["b"]


def test_measure_interleaves_and_records_load_failures(monkeypatch):
    monkeypatch.setattr(rs, "make_runner", FakeRunner)
    FakeRunner.log = []
    cs = cands("int8", ov=False) + [CpuCandidate("openvino", "int8", "int8", 1, "broken.onnx")]
    m = rs.measure(cs, rounds=3, iterations=4, warmup=1)
    assert m.errors == {"openvino/int8/1t": "'broken.onnx' cannot load"}
    assert set(m.timings) == {c.key for c in cs[:-1]}
    assert all(len(v) == 3 for v in m.timings.values())
    assert FakeRunner.log[:4] == FakeRunner.log[4:8]  # round robin: A, B, C, D, A, B, ...
    assert m.benchmark == {"rounds": 3, "iterations": 4, "warmup": 1, "batch_size": 1}
    sel = select(cs, m.timings, m.errors, m.benchmark)
    assert sel.chosen.key == "ort/lowered/2t"
    with pytest.raises(SwinEdgeError, match="no CPU runtime could load"):
        rs.measure(cs[-1:], rounds=1, iterations=1, warmup=0)


def manifest(tmp_path, fastest="openvino/int8/2t"):
    cs = cpu_candidates(
        "int8",
        tmp_path / "model.onnx",
        tmp_path / "model.int8.onnx",
        cores=2,
        openvino_available=True,
        has_bf16=False,
    )
    f = {c.key: fid(30.0) for c in cs} | {"ort/lowered/1t": fid(12.0)}
    sel = select(
        cs, fake_timings(cs, fastest), benchmark={"rounds": 5, "batch_size": 1}, fidelity=f
    )
    env = {"onnxruntime": "1.32", "openvino": "2026.4"}
    return sel, write_deploy_manifest(tmp_path / "deploy.json", sel, AMX, env)


def test_manifest_round_trip(tmp_path):
    sel, path = manifest(tmp_path)
    doc = json.loads(path.read_text())
    assert doc["format"] == rs.MANIFEST_FORMAT and doc["precision"] == "int8"
    assert doc["chosen"]["model"] == "model.int8.onnx"  # relative: the run folder can move
    assert doc["chosen"]["runtime"] == "openvino" and doc["chosen"]["threads"] == 2
    assert doc["cpu"]["class"] == "intel-amx" and "amx_bf16" in doc["cpu"]["flags"]
    assert doc["cpu"]["model"] == "Intel Xeon" and doc["env"]["openvino"] == "2026.4"
    assert len(doc["candidates"]) == 6
    assert all(len(c["p50_ms_per_round"]) == 5 for c in doc["candidates"])
    assert [c["key"] for c in doc["candidates"] if "rejected" in c] == ["ort/lowered/1t"]
    assert doc["benchmark"]["max_sqnr_drop_db"] == 10.0

    back = read_deploy_manifest(path)
    assert back.chosen == sel.chosen and back.selection.results == sel.results
    assert back.selection.benchmark == sel.benchmark and back.env["onnxruntime"] == "1.32"
    assert back.cpu_note(AMX) is None
    assert "rebuild" in back.cpu_note(AVX2) and "intel-amx" in back.cpu_note(AVX2)
    runner = make_runner(back)
    assert isinstance(runner, OpenvinoRunner) and runner.config.threads == 2
    assert runner.model_path == tmp_path / "model.int8.onnx"

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "deploy.json").write_text(path.read_text())
    assert read_deploy_manifest(moved / "deploy.json").chosen.model == str(
        moved / "model.int8.onnx"
    )


@pytest.mark.parametrize(
    "mutate, match",
    [
        (None, "does not exist"),
        (lambda t: "{not json", "not readable JSON"),
        (lambda t: "\udcff", "not readable JSON"),
        (lambda t: "[1, 2]", "not a swin_edge CPU deployment manifest"),
        (lambda t: t.replace("swin_edge.cpu-deploy/1", "swin_edge.cpu-deploy/9"), "format"),
        (lambda t: t.replace('"chosen"', '"picked"'), "malformed \\(missing 'chosen'\\)"),
        (lambda t: t.replace('"threads": 2', '"threads": "2"', 1), "malformed"),
        (lambda t: t.replace('"variant": "int8"', '"variant": "fast"', 1), "malformed"),
        (lambda t: t.replace('"precision": "int8"', '"precision": "fp32"', 1), "malformed"),
    ],
)
def test_manifest_refuses_missing_corrupt_and_foreign_files(tmp_path, mutate, match):
    _, path = manifest(tmp_path)
    if mutate is None:
        path.unlink()
    else:
        text = mutate(path.read_text())
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(SwinEdgeError, match=match) as e:
        read_deploy_manifest(path)
    assert "\n" not in str(e.value) and "deploy.json" in str(e.value)


def test_openvino_native_recipe_is_an_int8_candidate_with_its_own_file():
    kw = dict(cores=2, openvino_available=True, has_bf16=False)
    plain = cpu_candidates("int8", "f.onnx", "q.onnx", **kw)
    assert not [c for c in plain if c.variant == "int8-nncf"]
    both = cpu_candidates("int8", "f.onnx", "q.onnx", openvino_int8_path="ov.onnx", **kw)
    native = [c for c in both if c.variant == "int8-nncf"]
    assert [c.model for c in native] == ["ov.onnx", "ov.onnx"]  # 1 and 2 threads
    assert all(c.runtime == "openvino" and c.precision == "int8" for c in native)
    assert {c.model for c in both if c.variant != "int8-nncf"} == {"q.onnx"}
    pinned = cpu_candidates("int8", "f.onnx", "q.onnx", runtime="ort", openvino_int8_path="o", **kw)
    assert {c.runtime for c in pinned} == {"ort"}


def test_seven_bit_recipe_is_an_int8_candidate_only_where_u8s8_kernels_clamp():
    kw = dict(cores=2, openvino_available=True, has_bf16=False, int8_7bit_path="q7.onnx")
    seven = {("ort", "lowered-7bit"), ("ort", "as-written-7bit")}
    clamps = cpu_candidates("int8", "f.onnx", "q.onnx", u8s8_saturates=True, **kw)
    got = [c for c in clamps if (c.runtime, c.variant) in seven]
    assert {(c.runtime, c.variant, c.threads) for c in got} == {
        (*p, t) for p in seven for t in (1, 2)
    }
    assert {c.model for c in got} == {"q7.onnx"}
    assert {c.model for c in clamps if c not in got} == {"q.onnx"}
    # exact ties go to the 8-bit model (more accurate): the 7-bit variants come last
    tie = {c.key: [10.0] for c in clamps}
    assert select(clamps, tie).chosen.key == "ort/lowered/1t"
    # the 7-bit model wins on speed when it is faster and within the fidelity rule ...
    t = fake_timings(clamps, "ort/as-written-7bit/2t")
    f = {c.key: fid(38.0 if c.model == "q.onnx" else 33.5) for c in clamps}
    assert select(clamps, t, fidelity=f).chosen.key == "ort/as-written-7bit/2t"
    # ... and not when it loses more than --max-sqnr-drop
    assert select(clamps, t, fidelity=f, max_sqnr_drop_db=3.0).chosen.model == "q.onnx"
    # where the kernels are exact (VNNI/AMX, non-x86) it is as fast and less accurate: left out
    exact = cpu_candidates("int8", "f.onnx", "q.onnx", u8s8_saturates=False, **kw)
    assert {c.model for c in exact} == {"q.onnx"}
    pinned = cpu_candidates(
        "int8", "f.onnx", "q.onnx", u8s8_saturates=True, runtime="openvino", **kw
    )
    assert {c.runtime for c in pinned} == {"openvino"}
    low, asw = (make_runner(c) for c in got if c.threads == 2)
    assert {low.config.lower_int8, asw.config.lower_int8} == {True, False}
