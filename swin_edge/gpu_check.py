"""The Python half of ``scripts/gpu_check.sh``: trtexec lines, log parsing, the summary.

``scripts/gpu_check.sh`` runs the GPU-only checks on an NVIDIA machine (desktop or Jetson) and
records everything under one folder; ``python -m swin_edge.gpu_check summary DIR`` turns that
folder into ``DIR/summary.md``. The parsers read trtexec's own output formats (from its
sources: ``samples/common/sampleReporting.cpp``, ``sampleDevice.cpp``, ``logging.h``) and the
engine inspector's JSON (``--exportLayerInfo``); none of this needs a GPU, so it is tested
everywhere.

Folder layout written by the script (every piece optional; a missing one reads "not run"):
``steps.tsv`` (step, exit status, log), ``env.txt``, ``pytest.xml`` (JUnit),
``build-<precision>/`` (a ``swin_edge build`` run folder), ``trtexec/<precision>.build.log``,
``trtexec/<precision>.bench.log``, ``trtexec/<precision>.layers.json``, and for DLA
``dla/build.log``, ``dla/bench.log``, ``dla/layers.json``, ``dla/model.fp16.engine.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.tensorrt_compat import release
from .backends.tensorrt_layers import LayerSummary, summarize_layers

PRECISIONS = ("fp16", "int8")
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


@dataclass
class TrtexecRun:
    """What one trtexec run printed (fields are None when the log does not say)."""

    command: str | None = None
    tensorrt: str | None = None
    gpu: str | None = None
    compute_capability: str | None = None
    shapes: str | None = None
    passed: bool = False
    throughput_qps: float | None = None
    gpu_compute_ms: dict[str, float] = field(default_factory=dict)
    dla_layers: int | None = None
    gpu_layers: int | None = None


def _perf(line: str) -> dict[str, float]:
    """'min = 1 ms, max = 2 ms, mean = 1.5 ms, median = 1.4 ms, percentile(99%) = 2 ms'."""
    out = {k: float(v) for k, v in re.findall(rf"\b(min|max|mean|median) = {_NUM} ms", line)}
    for pct, v in re.findall(rf"percentile\((\d+(?:\.\d+)?)%\) = {_NUM} ms", line):
        out[f"p{pct}"] = float(v)
    return out


def parse_trtexec_log(text: str) -> TrtexecRun:
    """Parse trtexec's stdout: banner, device, performance summary, DLA/GPU layer lists."""
    run = TrtexecRun()
    m = re.search(
        r"&&&& (?:RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT (v\d+)\] # (.*)", text
    )
    if m:
        r = release(m.group(1))
        run.tensorrt = ".".join(map(str, r))
        run.command = m.group(2).strip()
        s = re.search(r"--shapes=(\S+)", run.command)
        run.shapes = s.group(1) if s else None
    run.passed = bool(re.search(r"^&&&& PASSED TensorRT\.trtexec", text, re.MULTILINE))
    m = re.search(r"Selected Device: (.+)", text)
    run.gpu = m.group(1).strip() if m else None
    m = re.search(r"Compute Capability: (\S+)", text)
    run.compute_capability = m.group(1) if m else None
    m = re.search(rf"Throughput: {_NUM} qps", text)
    run.throughput_qps = float(m.group(1)) if m else None
    m = re.search(r"GPU Compute Time: (.*)", text)
    run.gpu_compute_ms = _perf(m.group(1)) if m else {}
    if re.search(r"Layers Running on DLA", text, re.IGNORECASE):
        run.dla_layers = len(re.findall(r"\[DlaLayer\]", text))
        run.gpu_layers = len(re.findall(r"\[GpuLayer\]", text))
    return run


def trtexec_weak_typing(help_text: str) -> bool:
    """True for a trtexec with ``--fp16`` (10.x); 11.x removed the precision flags."""
    return bool(re.search(r"^\s*--fp16\b", help_text, re.MULTILINE))


def parse_junit(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def _steps(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            rows.append((parts[0], int(parts[1])))
    return rows


def _read(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None


def _layers(path: Path) -> LayerSummary | None:
    if not path.is_file():
        return None
    try:
        return summarize_layers(path.read_text())
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _mark(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not run"}[ok]


def render_summary(root: str | Path) -> str:
    """Markdown summary of a gpu_check folder."""
    root = Path(root)
    steps = _steps(root / "steps.tsv")
    runs = {
        p: parse_trtexec_log(t)
        for p in PRECISIONS
        if (t := _read(root / "trtexec" / f"{p}.bench.log")) is not None
    }
    layers = {p: _layers(root / "trtexec" / f"{p}.layers.json") for p in PRECISIONS}
    first = next(iter(runs.values()), TrtexecRun())
    lines = ["# swin_edge GPU check", ""]
    env = _read(root / "env.txt")
    lines += [
        f"- GPU: {first.gpu or 'unknown'} (compute capability {first.compute_capability or '?'})",
        f"- TensorRT (trtexec): {first.tensorrt or 'unknown'}",
    ]
    if env:
        lines.append("- environment: see `env.txt`")
    lines.append("")

    checks: list[tuple[str, bool | None]] = []
    junit = parse_junit(root / "pytest.xml")
    if junit is not None:
        bad = junit["failures"] + junit["errors"]
        ran = junit["tests"] - junit["skipped"]
        checks.append(
            (
                f"pytest -m tensorrt: {ran} ran, {bad} failed, {junit['skipped']} skipped",
                bad == 0 and ran > 0,
            )
        )
    else:
        checks.append(("pytest -m tensorrt", None))
    for name, rc in steps:
        if name.startswith("build-"):
            checks.append((f"`swin_edge {name.replace('-', ' --precision ')}`", rc == 0))
    int8 = layers.get("int8")
    if int8 is not None:
        ok = int8.detailed and not int8.fp32_unexpected
        checks.append(
            (
                f"INT8 engine: no FP32 layers except LayerNorm/Softmax/I-O "
                f"({len(int8.fp32_unexpected)} unexpected)",
                ok if int8.detailed else None,
            )
        )
    if "int8" in runs and "fp16" in runs:
        a = runs["int8"].gpu_compute_ms.get("median")
        b = runs["fp16"].gpu_compute_ms.get("median")
        checks.append(
            ("INT8 faster than FP16 (trtexec GPU compute median)", None if not (a and b) else a < b)
        )
    lines += ["## Checks", "", "| check | result |", "| --- | --- |"]
    lines += [f"| {name} | {_mark(ok)} |" for name, ok in checks]
    failed_steps = [f"`{n}` (exit {rc})" for n, rc in steps if rc != 0]
    if failed_steps:
        lines += ["", "Steps that failed: " + ", ".join(failed_steps) + " (logs in this folder)."]
    reports = [
        f"`{p}/report.md`"
        for p in ("build-fp16", "build-int8")
        if (root / p / "report.md").is_file()
    ]
    if reports:
        lines += [
            "",
            "swin_edge build reports (accuracy/fidelity, CUDA-event latency): "
            + ", ".join(reports),
        ]
    lines.append("")

    lines += ["## INT8 vs FP16 latency (trtexec)", ""]
    if runs:
        lines += [
            "| engine | batch (`--shapes`) | GPU compute median ms | p99 ms | throughput qps "
            "| speedup vs fp16 |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        ref = runs.get("fp16", TrtexecRun()).gpu_compute_ms.get("median")
        for p, r in runs.items():
            med = r.gpu_compute_ms.get("median")
            speed = f"{ref / med:.2f}x" if ref and med else "n/a"
            batch = r.shapes or "static (engine's own)"
            qps = "n/a" if r.throughput_qps is None else f"{r.throughput_qps:.1f}"
            lines.append(
                f"| {p} | {batch} | {_ms(med)} | {_ms(r.gpu_compute_ms.get('p99'))} | {qps} "
                f"| {speed} |"
            )
    else:
        lines.append("not run")
    lines.append("")

    lines += ["## Layer precisions (engine inspector, `--exportLayerInfo`)", ""]
    if any(layers.values()):
        lines += [
            "| engine | layers | per precision | unexpected FP32 | kept FP32 |",
            "| --- | --- | --- | --- | --- |",
        ]
        for p, s in layers.items():
            if s is None:
                continue
            per = ", ".join(f"{k} {v}" for k, v in s.precisions.items())
            lines.append(
                f"| {p} | {s.total} | {per if s.detailed else 'names only (not detailed)'} "
                f"| {len(s.fp32_unexpected)} | {len(s.fp32_expected)} |"
            )
        for p, s in layers.items():
            if s is not None and s.fp32_unexpected:
                lines += ["", f"Unexpected FP32 layers in the {p} engine:", ""]
                lines += [f"- `{n}`" for n in s.fp32_unexpected[:50]]
    else:
        lines.append("not run")
    lines.append("")

    lines += ["## DLA (Jetson)", ""]
    dla_log = _read(root / "dla" / "build.log")
    dla_layers = _layers(root / "dla" / "layers.json")
    man_text = _read(root / "dla" / "model.fp16.engine.json")
    if dla_log is None and man_text is None:
        lines.append("not run (no DLA on this machine, or `--dla off`)")
    else:
        lines += ["| source | layers on DLA | layers on GPU |", "| --- | --- | --- |"]
        if dla_log is not None:
            r = parse_trtexec_log(dla_log)
            lines.append(f"| trtexec build log | {r.dla_layers} | {r.gpu_layers} |")
        if dla_layers is not None:
            lines.append(f"| trtexec `--exportLayerInfo` | {dla_layers.dla} | {dla_layers.gpu} |")
        if man_text is not None:
            man: dict[str, Any] = json.loads(man_text)
            lay = man.get("layers") or {}
            lines.append(
                f"| swin_edge manifest (engine inspector) | {lay.get('dla', 'n/a')} "
                f"| {lay.get('gpu', 'n/a')} |"
            )
        bench = _read(root / "dla" / "bench.log")
        if bench is not None:
            r = parse_trtexec_log(bench)
            lines += [
                "",
                f"DLA engine GPU compute median: {_ms(r.gpu_compute_ms.get('median'))} ms",
            ]
    lines.append("")
    return "\n".join(lines)


def trtexec_line(
    onnx: str,
    engine: str,
    precision: str,
    layers: str | None,
    dla_core: int | None,
    weak_typing: bool,
    bench: bool,
    input_shape: tuple[int | str, ...],
) -> str:
    """trtexec arguments (without the program) for gpu_check's builds and benchmarks."""
    from .backends.tensorrt_build import TrtBuildConfig, trtexec_bench_command, trtexec_command

    cfg = TrtBuildConfig(precision=precision, dla_core=dla_core)
    if bench:
        cmd = trtexec_bench_command(engine, cfg, "input", input_shape, export_layer_info=layers)
    else:
        cmd = trtexec_command(onnx, engine, cfg, "input", input_shape, weak_typing, layers)
    return cmd.split(" ", 1)[1]


def _onnx_shape(path: str) -> tuple[int | str, ...]:
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in inits)
    return tuple(
        d.dim_value if d.HasField("dim_value") else "batch" for d in inp.type.tensor_type.shape.dim
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m swin_edge.gpu_check", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="write DIR/summary.md from a gpu_check folder")
    s.add_argument("dir")
    s.add_argument("--out", help="default: DIR/summary.md")
    t = sub.add_parser("trtexec-line", help="print trtexec arguments for this trtexec")
    t.add_argument("--onnx", required=True)
    t.add_argument("--engine", required=True)
    t.add_argument("--precision", required=True, choices=["fp32", "fp16", "int8"])
    t.add_argument("--layers")
    t.add_argument("--dla", type=int)
    t.add_argument("--bench", action="store_true")
    t.add_argument("--trtexec", default="trtexec")
    f = sub.add_parser("fp16", help="FP32 ONNX -> FP16 ONNX (LayerNorm/Softmax FP32)")
    f.add_argument("src")
    f.add_argument("out")
    args = p.parse_args(argv)
    if args.cmd == "summary":
        text = render_summary(args.dir)
        out = Path(args.out or Path(args.dir) / "summary.md")
        out.write_text(text)
        print(f"wrote {out}")
        return 0
    if args.cmd == "fp16":
        from .backends.tensorrt_build import onnx_to_fp16

        print(f"wrote {onnx_to_fp16(args.src, args.out)}")
        return 0
    try:
        help_text = subprocess.run(
            [args.trtexec, "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        help_text = ""
    print(
        trtexec_line(
            args.onnx,
            args.engine,
            args.precision,
            args.layers,
            args.dla,
            trtexec_weak_typing(help_text),
            args.bench,
            _onnx_shape(args.onnx),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
