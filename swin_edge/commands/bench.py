"""``bench``: interleaved latency benchmark and CI regression gate (:mod:`swin_edge.bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SwinEdgeError
from . import common

NAME = "bench"
HELP = "latency benchmark; with --baseline, a CI regression gate"
DESCRIPTION = (
    "Time models in interleaved rounds; ratios are medians of per-round ratios. With "
    "--baseline, exit 1 when ratio numerator/denominator (default int8/fp32) regressed by more "
    "than --max-regression. Without --onnx, exports and quantizes --model."
)


def name_and_onnx(text: str) -> str:
    """``type=`` for NAME=PATH to an existing ONNX file."""
    name, sep, path = text.partition("=")
    if not sep or not name or not Path(path).is_file():
        raise common.ArgError(f"{text!r}: use NAME=PATH to an existing .onnx file")
    return text


def percent(text: str) -> str:
    """``type=`` for a regression allowance like 10% (kept as text for the gate)."""
    from ..bench import parse_percent

    try:
        parse_percent(text)
    except SwinEdgeError:
        raise common.ArgError(f"{text!r}: use a percentage like 10%") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser)
    parser.add_argument(
        "--onnx", type=name_and_onnx, action="append", default=[], metavar="NAME=PATH"
    )
    parser.add_argument("--rounds", type=common.rounds, default=5)
    parser.add_argument("--iterations", type=common.iterations, default=20)
    parser.add_argument("--warmup", type=common.warmup, default=5)
    parser.add_argument(
        "--threads",
        type=common.threads,
        help="0: all cores (default; with --baseline: the threads it was recorded with)",
    )
    parser.add_argument(
        "--no-lowering",
        action="store_true",
        help="run Q/DQ files exactly as written (default: uint8 Gemms as MatMulIntegerToFloat)",
    )
    parser.add_argument(
        "--num-calib", type=common.count, default=32, help="calibration images (no --onnx)"
    )
    parser.add_argument("--numerator", default="int8")
    parser.add_argument("--denominator", default="fp32")
    parser.add_argument(
        "--baseline",
        type=common.input_file("write one with --write-baseline"),
        help="baseline JSON (from --write-baseline)",
    )
    parser.add_argument("--max-regression", type=percent, default="10%")
    parser.add_argument(
        "--summary", type=common.output_file(), help="write the gate's Markdown summary here"
    )
    parser.add_argument(
        "--write-baseline",
        type=common.output_file(),
        metavar="FILE",
        help="save this run's ratio as baseline",
    )
    parser.add_argument("--note", help="note stored in a written baseline")


def run(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from ..bench import (
        baseline_threads,
        gate,
        gate_markdown,
        interleaved_latency,
        parse_percent,
        read_baseline,
        write_baseline,
    )
    from ..utils import write_text_atomic

    max_reg = parse_percent(args.max_regression)
    baseline = read_baseline(args.baseline) if args.baseline else None
    recorded = baseline_threads(baseline) if baseline else None
    if recorded is not None and args.threads not in (None, recorded):
        raise SwinEdgeError(
            f"--threads {args.threads}: '{args.baseline}' was recorded on this CPU class with "
            f"{recorded or 'all'} thread(s); drop --threads (the gate measures as its baseline "
            "did), or re-record the baseline with --write-baseline"
        )
    threads = args.threads if args.threads is not None else (recorded or 0)
    models: dict[str, str] = {}
    for item in args.onnx:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise SwinEdgeError(f"--onnx {item!r}: use NAME=PATH to an existing .onnx file")
        models[name] = path
    with tempfile.TemporaryDirectory() as work:
        if not models:
            models = _bench_pair(args, Path(work))
        res = interleaved_latency(
            models,
            rounds=args.rounds,
            iterations=args.iterations,
            warmup=args.warmup,
            threads=threads,
            as_written=models if args.no_lowering else (),
        )
    print(
        f"{len(res.names)} models, {args.rounds} interleaved rounds x {args.iterations} runs, "
        f"{threads or 'all'} thread(s)"
    )
    ref = res.names[0]
    for name in res.names:
        print(
            f"  {name:16s} p50 {res.p50(name):8.2f} ms  ratio to {ref} {res.ratio(name, ref):.3f}"
        )
    num, den = args.numerator, args.denominator
    if args.write_baseline:
        cls = write_baseline(args.write_baseline, res, num, den, note=args.note or "")
        print(
            f"wrote baseline {args.write_baseline} for CPU class {cls}: "
            f"{num}/{den} = {res.ratio(num, den):.3f}"
        )
    if baseline is None:
        return 0
    result = gate(res, baseline, max_reg)
    md = gate_markdown(result, baseline["numerator"], baseline["denominator"], args.baseline)
    print(md)
    for target in filter(None, [args.summary, os.environ.get("GITHUB_STEP_SUMMARY")]):
        write_text_atomic(target, md)
    return 0 if result.passed else 1


def _bench_pair(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """Export + quantize (cpu recipe) the --model into ``work``: {'fp32': ..., 'int8': ...}."""
    from ..calibration import load_images
    from ..export import torch_to_onnx
    from ..quantize import QuantRecipe, quantize_onnx

    model = common.model_from_args(args)
    fp32 = torch_to_onnx(model, work / "fp32.onnx", verify=False).path
    images = load_images(None, model.cfg.preprocess, args.num_calib).images
    quantize_onnx(fp32, work / "int8.onnx", images, QuantRecipe(target="cpu"))
    return {"fp32": str(fp32), "int8": str(work / "int8.onnx")}
