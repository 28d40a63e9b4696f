"""``compare``: accuracy/fidelity and latency vs FP32 (:func:`swin_edge.evaluate.evaluate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "compare"
HELP = "accuracy and latency of ONNX models against the FP32 one"
DESCRIPTION = (
    "Top-1/top-5 when the image folder has class subfolders; otherwise top-1 agreement, top-5 "
    "overlap, cosine and SQNR against the first (FP32) model. Latency: warm-up, then "
    "p50/p90/p99."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="+",
        type=common.input_file("pass .onnx files written by `python -m swin_edge export`"),
        help="ONNX models; the first is the FP32 reference",
    )
    common.add_image_args(parser, "eval", 300)
    parser.add_argument(
        "--threads", type=common.threads, default=0, help="ONNX Runtime threads (0: all cores)"
    )
    parser.add_argument(
        "--no-lowering",
        action="store_true",
        help="run Q/DQ files exactly as written (default: uint8 Gemms as MatMulIntegerToFloat)",
    )
    common.add_timing_args(parser)
    parser.add_argument("--json", type=common.output_file(), help="also write the results as JSON")


def check(args: argparse.Namespace) -> None:
    common.refuse_same(args.json, "--json", *(("the model", m) for m in args.models))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..backends.onnxrt import OnnxrtRunner, OrtConfig
    from ..calibration import load_images
    from ..evaluate import Candidate, check_candidates, evaluate
    from ..onnx_check import check_image_model_file

    pp = common.preprocess_of(args.models[0])
    cands = [
        Candidate(Path(m).stem, "onnxruntime", "fp32" if i == 0 else "int8", Path(m))
        for i, m in enumerate(args.models)
    ]
    ref = check_image_model_file(args.models[0])  # the models fit each other: before any image
    check_candidates(cands, np.zeros((0, *ref.input_shape[1:]), np.float32))
    data = load_images(args.eval_dir, pp, args.num_images, args.seed)
    cfg = OrtConfig(threads=args.threads, lower_int8=not args.no_lowering)
    results = evaluate(
        cands,
        data.images,
        data.labels,
        lambda c: OnnxrtRunner(c.path, cfg),
        args.iterations,
        args.warmup,
        rounds=args.rounds,
    )
    for r in results:
        acc = f"top-1 {r.accuracy.top1:.4f} top-5 {r.accuracy.top5:.4f}" if r.accuracy else ""
        fid = common.fidelity_line(r.fidelity.to_dict()) if r.fidelity else "reference"
        print(
            f"{r.name:32s} p50 {r.latency.p50_ms:7.2f} ms ({r.speedup['median']:.2f}x) {acc} {fid}"
        )
        for o in r.outputs or []:  # a model with several outputs: each one against FP32
            print(f"  {o['name']:30s} cosine {o['cosine']:.5f} SQNR {o['sqnr_db']:.1f} dB")
    if args.json:
        from ..utils import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in results])
    return 0
