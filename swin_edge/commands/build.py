"""``build``: the whole pipeline (:func:`swin_edge.pipeline.build`)."""

from __future__ import annotations

import argparse

from . import common

NAME = "build"
HELP = "the whole pipeline: export -> quantize -> engine -> evaluate -> report"
DESCRIPTION = (
    "Export -> quantize -> engine (TensorRT when available, else the fastest CPU runtime) -> "
    "evaluate -> report, into --out. Works offline with the defaults (Swin-T config, bundled "
    "calibration photos)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser)
    parser.add_argument(
        "--onnx",
        type=common.input_file("pass an FP32 .onnx file"),
        help="start from this FP32 ONNX (exported elsewhere) instead of exporting --model; "
        "preprocessing from its swin_edge metadata or the preprocessing flags",
    )
    parser.add_argument(
        "--precision",
        default="int8",
        choices=["fp32", "fp16", "bf16", "int8"],
        help="deployed precision (fp16 needs TensorRT; bf16 is OpenVINO on a CPU with AMX-BF16 "
        "or AVX512-BF16); FP32 is the reference",
    )
    parser.add_argument(
        "--target",
        default="auto",
        choices=["auto", "cpu", "tensorrt"],
        help="auto: TensorRT when usable (GPU, TensorRT >= 10, pycuda), else cpu",
    )
    parser.add_argument(
        "--calib-dir", type=common.image_dir, help="calibration images (default: bundled photos)"
    )
    parser.add_argument(
        "--eval-dir",
        type=common.image_dir,
        help="evaluation images; class subfolders give top-1/top-5",
    )
    parser.add_argument(
        "--num-calib", type=common.count, default=300, help="calibration images sampled"
    )
    parser.add_argument(
        "--num-eval", type=common.count, default=300, help="evaluation images sampled"
    )
    parser.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    parser.add_argument(
        "--calibration", default="minmax", choices=["minmax", "entropy", "percentile"]
    )
    parser.add_argument("--keep-float", action="append", default=[], metavar="PATTERN")
    common.add_gemm_input_bits_arg(parser)
    parser.add_argument(
        "--out", type=common.run_folder, help="run folder (default runs/<model>-<precision>)"
    )
    parser.add_argument(
        "--batch", type=common.batch_size, default=1, help="batch of the export and timing"
    )
    parser.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis")
    parser.add_argument(
        "--threads", type=common.threads, default=0, help="ONNX Runtime threads (0: all)"
    )
    common.add_timing_args(parser)
    parser.add_argument(
        "--runtime",
        choices=["ort", "openvino"],
        help="CPU: pin ONNX Runtime or OpenVINO (default: time both and deploy the fastest)",
    )
    common.add_sqnr_drop_arg(parser)
    parser.add_argument(
        "--triton",
        type=common.run_folder,
        metavar="REPO",
        help="also write a Triton model repository of the run to REPO (exports a dynamic "
        "batch so Triton can batch requests)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_trt_args(parser)


def check(args: argparse.Namespace) -> None:
    cfg = _config(args)  # --onnx with model options, ...
    if args.out is None:  # the default run folder must be writable too
        try:
            common.run_folder(str(cfg.out_dir))
        except common.ArgError as e:
            raise common.ArgError(f"argument --out (default): {e}") from None
    if args.dla is not None:  # DLA runs FP16 only, static batch only
        from ..backends.tensorrt import check_dla_request

        check_dla_request(args.dla, args.precision, dynamic_batch=args.dynamic_batch)


def _config(args: argparse.Namespace):
    from ..pipeline import BuildConfig

    return BuildConfig(
        precision=args.precision,
        target=args.target,
        model=args.model,
        checkpoint=args.checkpoint,
        img_size=args.img_size,
        window_size=args.window_size,
        num_classes=args.num_classes,
        calib_dir=args.calib_dir,
        eval_dir=args.eval_dir,
        num_calib=args.num_calib,
        num_eval=args.num_eval,
        engine=args.engine,
        calibration=args.calibration,
        keep_float=tuple(args.keep_float),
        gemm_input_bits=args.gemm_input_bits,
        out=args.out,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch or (args.triton is not None and args.dla is None),
        threads=args.threads,
        iterations=args.iterations,
        warmup=args.warmup,
        rounds=args.rounds,
        runtime=args.runtime,
        max_sqnr_drop_db=args.max_sqnr_drop,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        dla_core=args.dla,
        onnx=args.onnx,
        model_args=tuple(args.model_arg),
        mean=args.mean,
        std=args.std,
        resize=args.resize,
        crop=args.crop,
        interpolation=args.interpolation,
    )


def run(args: argparse.Namespace) -> int:
    from ..pipeline import build
    from ..report import speedup_of

    res = build(_config(args), progress=not args.no_progress)
    rows = res.report["results"]
    print(f"target {res.target}; artifacts in {res.out_dir}/")
    for r in rows:
        q = (
            f"top-1 {r['accuracy']['top1']:.4f}"
            if r["accuracy"]
            else common.fidelity_line(r["fidelity"])
            if r["fidelity"]
            else "reference"
        )
        print(
            f"  {r['name']:20s} p50 {r['latency']['p50_ms']:8.2f} ms "
            f"({speedup_of(r, rows[0]):.2f}x)  {q}"
        )
    print(f"report: {res.artifacts['report_md']} (+ report.json, report.png)")
    if args.triton:
        from ..triton.deployment import repository_from_run

        repo = repository_from_run(res.out_dir, args.triton, max_batch_size=max(8, args.batch))
        print(f"Triton repository {repo.path}: {', '.join(repo.models)}")
    return 0
