"""Reference benchmark (not a test; OpenVINO is not a swin_edge dependency).

    pip install openvino
    python scripts/bench_int8_cpu.py --workdir W     # writes W/fp32.onnx, W/nncf-raw.onnx, ...
    python scripts/bench_openvino_reference.py W [--threads 1,0] [--rounds 5] [--iterations 20]

Times the ONNX files that bench_int8_cpu.py wrote in OpenVINO on the same CPU. OpenVINO fuses
LayerNorm, GELU and attention and has AMX kernels, so its INT8/FP32 ratio shows what a runtime
with fused kernels reaches for this model; it puts the ONNX Runtime figures in context.
Variants (interleaved rounds; speedup = median of per-round ratios against ov-fp32):
  ov-fp32       fp32.onnx at f32 inference precision (OpenVINO's default on AMX CPUs is bf16)
  ov-bf16       fp32.onnx at bf16 inference precision (AMX-BF16 where the CPU has it)
  ov-int8-nncf  nncf-raw.onnx: NNCF's Q/DQ model, which targets OpenVINO; non-int8 parts f32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from swin_edge.errors import SwinEdgeError
from swin_edge.utils import lazy_import

VARIANTS = {
    "ov-fp32": ("fp32.onnx", "f32"),
    "ov-bf16": ("fp32.onnx", "bf16"),
    "ov-int8-nncf": ("nncf-raw.onnx", "f32"),
}


def p50_ms(request, feed: dict, iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        request.infer(feed)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        request.infer(feed)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", help="folder written by bench_int8_cpu.py --workdir")
    ap.add_argument("--threads", default="1,0", help="comma-separated thread counts (0: all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    ov = lazy_import("openvino", "pip install openvino (a reference, not a swin_edge dependency)")
    work = Path(args.workdir)
    for file, _ in VARIANTS.values():
        if not (work / file).is_file():
            raise SwinEdgeError(
                f"{work / file}: missing; run scripts/bench_int8_cpu.py --workdir {work} first"
            )
    core = ov.Core()
    for threads in (int(t) for t in args.threads.split(",")):
        requests, feed = {}, None
        for name, (file, precision) in VARIANTS.items():
            config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            compiled = core.compile_model(str(work / file), "CPU", config)
            if feed is None:
                shape = [int(d) for d in compiled.input(0).get_partial_shape().to_shape()]
                feed = {0: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
            requests[name] = compiled.create_infer_request()
        rounds: dict[str, list[float]] = {n: [] for n in VARIANTS}
        for _ in range(args.rounds):
            for name, request in requests.items():
                rounds[name].append(p50_ms(request, feed, args.iterations, args.warmup))
        print(
            f"\nOpenVINO {ov.__version__}, threads={threads or 'all'}, "
            f"{args.rounds} interleaved rounds x {args.iterations} runs"
        )
        print(f"{'model':14s} {'p50 ms':>8s} {'vs ov-fp32':>11s} {'round range':>12s}")
        for name, times in rounds.items():
            ratios = [f / t for f, t in zip(rounds["ov-fp32"], times, strict=True)]
            print(
                f"{name:14s} {statistics.median(times):8.2f} {statistics.median(ratios):10.2f}x "
                f"{min(ratios):6.2f}-{max(ratios):.2f}x"
            )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SwinEdgeError as e:
        sys.exit(f"error: {e}")
