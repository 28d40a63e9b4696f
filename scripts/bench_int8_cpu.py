"""Benchmark (not a test): Swin-T 224 in ONNX Runtime on this CPU, FP32 vs INT8 variants.

    python scripts/bench_int8_cpu.py [--rounds 5] [--iterations 20] [--threads 1,0] [--out F.json]
                                     [--workdir DIR] [--reference NAME=PATH]

All models are timed in interleaved rounds in one run; speedups are medians of per-round
ratios. Variants:
  fp32            our static export, ORT_ENABLE_ALL
  int8-cpu        our recipe (ORT engine, uint8 activations placed where they are produced), run
                  as our ONNX Runtime runner runs it: Q/DQ Gemms lowered to MatMulIntegerToFloat
  int8-cpu-qdq    the same Q/DQ file run exactly as written (ORT fuses it into QGemm)
  int8-nncf-cpu   NNCF (TRANSFORMER) + our exact Q/DQ rewrites
  int8-nncf-raw   NNCF (TRANSFORMER) output as-is, run as written
  int8-ort-plain  ONNX Runtime quantize_static defaults on the same export (QDQ, U8S8,
                  per-channel, MatMul/Gemm/Conv), run as written: the off-the-shelf baseline
  fp32-mask100    FP32 export keeping timm's -100 shifted-window mask: its masked attention
                  weights are denormals, which is how much slower a timm-style export runs
  NAME, NAME-int8-ort-plain
                  with --reference NAME=PATH: another FP32 export (e.g. timm's, written by
                  export_timm_reference.py) and ORT quantize_static defaults applied to it
Speedups are against `fp32` (our export, denormal-free mask: the fastest FP32 we ship) and,
without --quick, also against `fp32-mask100` and each --reference.
Weights are random (no checkpoint is downloaded); biases are made non-zero like a trained
model's, since zero biases are removed by the exporter and would flatter both sides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

from swin_edge.bench import environment, interleaved_latency
from swin_edge.calibration import load_images
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import create_model, swin
from swin_edge.quantize import QuantRecipe, quantize_onnx
from swin_edge.quantize.nncf_engine import onnx_to_int8_nncf


def plain_ort(fp32: Path, out: Path, images: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter({"input": images[i : i + 1]} for i in range(len(images)))

        def get_next(self):
            return next(self.it, None)

    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
    )


def nncf_raw(fp32: Path, out: Path, images: np.ndarray) -> None:
    import nncf

    model = onnx.load(str(fp32))
    data = nncf.Dataset([{"input": images[i : i + 1]} for i in range(len(images))])
    q = nncf.quantize(
        model,
        data,
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(images),
    )
    onnx.save(q, str(out))


@contextlib.contextmanager
def _timm_mask() -> Iterator[None]:
    """Export with timm's -100 mask fill instead of our denormal-free value."""
    saved = swin.EXPORT_MASK_FILL
    swin.EXPORT_MASK_FILL = swin.MASK_FILL
    try:
        yield
    finally:
        swin.EXPORT_MASK_FILL = saved


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="swin_tiny")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument(
        "--threads",
        default="1,0",
        help="comma-separated ONNX Runtime thread counts to measure (0: all cores)",
    )
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="only fp32, int8-cpu and int8-cpu-qdq")
    ap.add_argument("--workdir", help="keep the ONNX files here (default: a new temp folder)")
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another FP32 export to compare against (e.g. timm's, from export_timm_reference.py);"
        " without --quick its ORT quantize_static defaults are timed too",
    )
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()

    references = {}
    for item in args.reference:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            sys.exit(f"error: --reference {item!r}: expected NAME=PATH to an existing ONNX file")
        references[name] = Path(path)
    model = create_model(args.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
    images = load_images(None, model.cfg.preprocess).images
    work = Path(args.workdir or tempfile.mkdtemp(prefix="swin_edge_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    fp32 = torch_to_onnx(model, work / "fp32.onnx", ExportConfig(batch_size=args.batch)).path
    models = {"fp32": fp32}
    if not args.quick:
        with _timm_mask():
            models["fp32-mask100"] = torch_to_onnx(
                model, work / "fp32-mask100.onnx", ExportConfig(batch_size=args.batch)
            ).path
    quantize_onnx(fp32, work / "int8-cpu.onnx", images, QuantRecipe(target="cpu"))
    models["int8-cpu"] = work / "int8-cpu.onnx"
    models["int8-cpu-qdq"] = work / "int8-cpu.onnx"
    as_written = {"int8-cpu-qdq"}
    if not args.quick:
        onnx_to_int8_nncf(fp32, work / "nncf.onnx", images, QuantRecipe(engine="nncf"))
        models["int8-nncf-cpu"] = work / "nncf.onnx"
        nncf_raw(fp32, work / "nncf-raw.onnx", images)
        models["int8-nncf-raw"] = work / "nncf-raw.onnx"
        as_written.add("int8-nncf-raw")
        plain_ort(fp32, work / "plain.onnx", images)
        models["int8-ort-plain"] = work / "plain.onnx"
        as_written.add("int8-ort-plain")
    for name, path in references.items():
        models[name] = path
        if not args.quick:
            plain_ort(path, work / f"{name}-int8-ort-plain.onnx", images)
            models[f"{name}-int8-ort-plain"] = work / f"{name}-int8-ort-plain.onnx"
            as_written.add(f"{name}-int8-ort-plain")

    env = environment()
    print(f"ONNX files in {work}")
    figures = {}
    for threads in (int(t) for t in args.threads.split(",")):
        res = interleaved_latency(
            {k: str(v) for k, v in models.items()},
            rounds=args.rounds,
            iterations=args.iterations,
            threads=threads,
            as_written=as_written,
        )
        print(
            f"\n{args.model} batch {res.batch_size}, ONNX Runtime {env['onnxruntime']}, "
            f"{env['cpu']} ({env['cores']} cores), threads={threads or 'all'}, "
            f"{args.rounds} interleaved rounds x {args.iterations} runs"
        )
        refs = [r for r in ("fp32", "fp32-mask100", *references) if r in res.names]
        head = "".join(f" {'vs ' + r:>14s} {'round range':>12s}" for r in refs)
        print(f"{'model':20s} {'p50 ms':>8s}{head}")
        rows = {}
        for name in res.names:
            rows[name] = {"p50_ms": res.p50(name)}
            line = f"{name:20s} {res.p50(name):8.2f}"
            for ref in refs:
                speed = 1.0 / res.ratio(name, ref)
                lo, hi = res.ratio_spread(name, ref)
                rows[name]["speedup" if ref == "fp32" else f"speedup_vs_{ref}"] = speed
                line += f" {speed:13.2f}x {1 / hi:6.2f}-{1 / lo:.2f}x"
            print(line)
        label = {"fp32": "our FP32", "fp32-mask100": "FP32 with timm's mask (timm's speed)"}
        speeds = ", ".join(
            f"{1.0 / res.ratio('int8-cpu', r):.2f}x vs {label.get(r, r)}" for r in refs
        )
        print(f"=> int8-cpu, threads={threads or 'all'}: {speeds}; target 2.5x")
        figures[f"threads={threads or 'all'}"] = {"rounds": res.rounds, "summary": rows}
    if args.out:
        Path(args.out).write_text(
            json.dumps({"environment": env, "batch": args.batch, "results": figures}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
