"""``engine``: ONNX -> TensorRT engine + manifest, benchmarked (swin_edge.backends.tensorrt)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SwinEdgeError
from . import common

NAME = "engine"
HELP = "ONNX -> TensorRT engine with manifest, benchmarked (needs TensorRT)"
DESCRIPTION = (
    "Build a strongly typed TensorRT engine (needs TensorRT >= 10, pycuda and a GPU), write "
    "its manifest, time it with CUDA events."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=common.input_file("pass the ONNX to build from"))
    parser.add_argument(
        "--precision",
        default="int8",
        choices=["fp32", "fp16", "int8"],
        help="the ONNX's precision (int8: Q/DQ ONNX; fp16: FP16 ONNX)",
    )
    parser.add_argument("--out", type=common.output_file())
    parser.add_argument("--max-batch", type=common.batch_size, default=8)
    parser.add_argument("--timing-cache", type=common.output_file())
    parser.add_argument("--iterations", type=common.iterations, default=200)
    parser.add_argument("--warmup", type=common.warmup, default=50)
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="fp32 only: allow TF32 tensor cores (the engine is then labelled tf32)",
    )
    common.add_trt_args(parser)


def out_path(args: argparse.Namespace) -> str:
    """--out, or <model>.<precision>.engine beside the ONNX."""
    return args.out or str(Path(args.onnx).with_suffix(f".{args.precision}.engine"))


def check(args: argparse.Namespace) -> None:
    common.refuse_same(out_path(args), "--out", ("the input model", args.onnx))
    common.refuse_same(args.timing_cache, "--timing-cache", ("the input model", args.onnx))


def run(args: argparse.Namespace) -> int:
    from ..backends.tensorrt import TrtBuildConfig, TrtRunner, onnx_to_engine

    cfg = TrtBuildConfig(
        precision=args.precision,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        max_batch=args.max_batch,
        timing_cache=args.timing_cache,
        dla_core=args.dla,
        tf32=args.tf32,
    )
    if not Path(args.onnx).is_file():
        raise SwinEdgeError(f"'{args.onnx}' does not exist; pass the ONNX to build from")
    out = out_path(args)
    manifest = onnx_to_engine(args.onnx, out, cfg)
    print(
        f"wrote {out} (+ .json manifest) for {manifest['gpu_name']}, TensorRT "
        f"{manifest['tensorrt_version']} ({manifest.get('label', args.precision)})\n"
        f"equivalent: {manifest['trtexec']}\nbenchmark: {manifest.get('trtexec_bench', '')}"
    )
    layers = manifest.get("layers") or {}
    if layers:
        print(
            f"layers: {layers.get('dla', 0)} on DLA, {layers.get('gpu', 0)} on GPU; precisions "
            f"{layers.get('precisions', {})}; unexpected FP32: "
            f"{', '.join(layers.get('fp32_unexpected', [])) or 'none'}"
        )
    with TrtRunner(out) as runner:
        s = runner.benchmark(iterations=args.iterations, warmup=args.warmup)
    print(
        f"p50 {s.p50_ms:.3f} ms  p90 {s.p90_ms:.3f}  p99 {s.p99_ms:.3f}  "
        f"{s.throughput:.1f} img/s (batch {s.batch_size}, CUDA events)"
    )
    return 0
