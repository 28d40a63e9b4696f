"""Benchmark (not a test): Swin-T 224 on this CPU in ONNX Runtime and OpenVINO, FP32 vs INT8.

    python scripts/bench_int8_cpu.py [--rounds 5] [--iterations 20] [--threads 1,0] [--out F.json]
                                     [--workdir DIR] [--reference NAME=PATH] [--quick]

All models, both runtimes, are timed in interleaved rounds in one run; speedups are medians of
per-round ratios. Variants:
  fp32            our static export in ONNX Runtime, ORT_ENABLE_ALL
  int8-cpu        our recipe (ORT engine, uint8 activations placed where they are produced), run
                  as our ONNX Runtime runner runs it: Q/DQ Gemms lowered to MatMulIntegerToFloat
  int8-cpu-qdq    the same Q/DQ file run exactly as written (ORT fuses it into QGemm)
  int8-cpu7       our recipe with 7-bit GEMM inputs (lowered): exact with the fast u8s8 kernels
                  of x86 CPUs without VNNI, where build offers it as a candidate (elsewhere it
                  is a build option, --gemm-input-bits 7)
  int8-cpu7-qdq   the same 7-bit file run as written (QGemm)
  int8-nncf-cpu   NNCF (TRANSFORMER) + our exact Q/DQ rewrites
  int8-nncf-raw   NNCF (TRANSFORMER) output as-is, run as written
  int8-ort-plain  ONNX Runtime quantize_static defaults on the same export (QDQ, U8S8,
                  per-channel, MatMul/Gemm/Conv), run as written: the off-the-shelf baseline
  fp32-mask100    FP32 export keeping timm's -100 shifted-window mask (denormal attention
                  weights after Softmax: slow on CPUs whose kernels produce denormals)
  ov-fp32         OpenVINO, fp32.onnx at f32 inference precision
  ov-bf16         OpenVINO, fp32.onnx in bf16 (only on CPUs with AMX-BF16/AVX512-BF16)
  ov-int8-cpu     OpenVINO running our cpu-recipe Q/DQ model
  ov-int8-nncf    OpenVINO running NNCF's Q/DQ model (what OpenVINO's own tooling gives)
  NAME, NAME-int8-ort-plain
                  with --reference NAME=PATH: another FP32 export (e.g. timm's, written by
                  export_timm_reference.py) and ORT quantize_static defaults applied to it
For each thread setting the script prints what `build --precision int8` would deploy on this CPU
(the fastest of int8-cpu, int8-cpu-qdq, ov-int8-cpu and ov-int8-nncf, OpenVINO's own recipe,
which build also offers OpenVINO, and on x86 without VNNI int8-cpu7 and int8-cpu7-qdq, among
those build's fidelity rule keeps: SQNR vs FP32 on 8 images within --max-sqnr-drop of the best),
the fastest off-the-shelf path (FP32 in either runtime, ORT quantize_static defaults, OpenVINO +
NNCF), and the INT8 GEMM floor measured on this machine (the model's GEMM ops at the int8 peak of
a 1024^3 MatMulInteger with ONNX Runtime's default kernels; on x86 without VNNI also with the
exact u8u8 ones that 8-bit models run there) with how far the deployed model is from it. On
such CPUs the off-the-shelf ORT rows run ONNX Runtime's default u8s8 kernels, which sum pairs of
products in saturating int16 (fast, but see their SQNR). OpenVINO rows need the `openvino` extra
(skipped without it).
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.backends.openvino import (
    OpenvinoRunner,
    OvConfig,
    openvino_available,
    openvino_version,
)
from swin_edge.backends.timing import interleaved_benchmark
from swin_edge.bench import environment
from swin_edge.calibration import load_images
from swin_edge.cpu import cpu_info
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.gemm_floor import gemm_ops, gemm_peak
from swin_edge.metrics import fidelity_per_output
from swin_edge.model import create_model, swin
from swin_edge.quantize import QuantRecipe, quantize_onnx
from swin_edge.quantize.nncf_engine import onnx_to_int8_nncf
from swin_edge.runtime_select import fp32_reference, unfaithful

DEPLOYABLE = ("int8-cpu", "int8-cpu-qdq", "ov-int8-cpu", "ov-int8-nncf")
SEVEN_BIT = ("int8-cpu7", "int8-cpu7-qdq")  # build's candidates where u8s8 kernels clamp
OFF_THE_SHELF = ("fp32", "ov-fp32", "int8-ort-plain", "ov-int8-nncf", "int8-nncf-raw")


def runner(name: str, path: Path, threads: int, as_written: set[str]):
    """The runner a variant is timed with: OpenVINO for ``ov-*``, else ONNX Runtime; the
    off-the-shelf INT8 files with ONNX Runtime's defaults (its fast u8s8 kernels, which
    saturate on x86 without VNNI), ours as swin_edge runs them (exact kernels there)."""
    if name.startswith("ov-"):
        precision = "bf16" if name == "ov-bf16" else "f32"
        return OpenvinoRunner(path, OvConfig(threads=threads, precision=precision))
    shelf = name.endswith("int8-ort-plain") or name == "int8-nncf-raw"
    cfg = OrtConfig(threads=threads, lower_int8=name not in as_written)
    return OnnxrtRunner(path, replace(cfg, exact_u8s8=False) if shelf else cfg)


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
    ap.add_argument(
        "--quick",
        action="store_true",
        help="only fp32, int8-cpu, int8-cpu-qdq and their OpenVINO rows",
    )
    ap.add_argument("--workdir", help="keep the ONNX files here (default: a new temp folder)")
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another FP32 export to compare against (e.g. timm's, from export_timm_reference.py);"
        " without --quick its ORT quantize_static defaults are timed too",
    )
    ap.add_argument("--no-openvino", action="store_true", help="ONNX Runtime rows only")
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
    seven = QuantRecipe(target="cpu", gemm_input_bits=7)
    quantize_onnx(fp32, work / "int8-cpu7.onnx", images, seven)
    models["int8-cpu7"] = work / "int8-cpu7.onnx"
    models["int8-cpu7-qdq"] = work / "int8-cpu7.onnx"
    as_written.add("int8-cpu7-qdq")
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

    ov = not args.no_openvino and openvino_available()
    if ov:
        models["ov-fp32"] = fp32
        if cpu_info().has_bf16:
            models["ov-bf16"] = fp32
        models["ov-int8-cpu"] = work / "int8-cpu.onnx"
        if not args.quick:
            models["ov-int8-nncf"] = work / "nncf-raw.onnx"
    env = environment()
    env["openvino"] = openvino_version()
    ops = gemm_ops(fp32)
    print(f"ONNX files in {work}; {ops / 1e9:.2f} GOP of GEMMs per batch")
    check, out_names, reference = fp32_reference(fp32, images[-8:])
    figures = {}
    saturates = cpu_info().u8s8_saturates
    for threads in (int(t) for t in args.threads.split(",")):
        runners = {n: runner(n, p, threads, as_written) for n, p in models.items()}
        for r in runners.values():
            r.activate()
        peak = gemm_peak(threads, exact_u8s8=saturates)
        timing = interleaved_benchmark(runners, args.rounds, args.iterations, warmup=5)
        names = list(models)
        p50 = {n: float(np.median(timing.p50s(n))) for n in names}
        print(
            f"\n{args.model} batch {args.batch}, ONNX Runtime {env['onnxruntime']}, OpenVINO "
            f"{env['openvino'] or 'not installed'}, {env['cpu']} (class {env['cpu_class']}, "
            f"{env['cores']} cores), threads={threads or 'all'}, {args.rounds} interleaved "
            f"rounds x {args.iterations} runs"
        )
        refs = [r for r in ("fp32", "ov-fp32", "fp32-mask100", *references) if r in names]
        head = "".join(f" {'vs ' + r:>14s} {'round range':>12s}" for r in refs)
        print(f"{'model':20s} {'p50 ms':>8s}{head}")
        rows = {}
        for name in names:
            rows[name] = {"p50_ms": p50[name]}
            line = f"{name:20s} {p50[name]:8.2f}"
            for ref in refs:
                s = timing.speedup(name, ref)
                rows[name]["speedup" if ref == "fp32" else f"speedup_vs_{ref}"] = s["median"]
                line += f" {s['median']:13.2f}x {s['min']:6.2f}-{s['max']:.2f}x"
            print(line)
        offered = DEPLOYABLE + (SEVEN_BIT if saturates else ())
        deployable = [n for n in offered if n in names]
        checked = deployable + [n for n in SEVEN_BIT if n in names and n not in deployable]
        fid = {
            n: fidelity_per_output(out_names, reference, runners[n].infer_all_outputs(check))[0]
            for n in checked
        }
        left_out = unfaithful({n: fid[n].to_dict() for n in deployable})
        for n in checked:
            why = f"; not deployed: {left_out[n]}" if n in left_out else ""
            why = why if n in deployable else " (a build option, not in the selection)"
            print(f"   {n:20s} SQNR vs FP32 on {len(check)} images {fid[n].sqnr_db:.1f} dB{why}")
        deployed = min((n for n in deployable if n not in left_out), key=p50.get)
        shelf = [n for n in names if n in OFF_THE_SHELF or n in references or "ort-plain" in n]
        best_shelf = min(shelf, key=p50.get)
        vs_shelf = timing.speedup(deployed, best_shelf)
        floor = peak.floor_ms(ops * args.batch, int8=True)
        print(
            f"=> deployed (build's choice among {', '.join(deployable)}): {deployed} "
            f"{p50[deployed]:.2f} ms; fastest off-the-shelf: {best_shelf} {p50[best_shelf]:.2f} "
            f"ms; deployed is {vs_shelf['median']:.2f}x as fast (rounds "
            f"{vs_shelf['min']:.2f}-{vs_shelf['max']:.2f}x)"
        )
        print(
            f"=> INT8 GEMM floor here: {floor:.1f} ms ({ops * args.batch / 1e9:.2f} GOP at "
            f"{peak.int8_ops_per_s / 1e9:.0f} GOP/s u8s8, FP32 {peak.fp32_ops_per_s / 1e9:.0f} "
            f"GOP/s, {peak.size}^3 GEMM); deployed is {p50[deployed] / floor:.2f}x the floor"
        )
        exact_floor = peak.floor_ms(ops * args.batch, True, exact=True) if saturates else None
        if exact_floor:
            print(
                f"   with the exact u8u8 kernels 8-bit models run on this CPU (its u8s8 kernels "
                f"clamp): {exact_floor:.1f} ms ({peak.int8_exact_ops_per_s / 1e9:.0f} GOP/s)"
            )
        figures[f"threads={threads or 'all'}"] = {
            "rounds": {n: timing.p50s(n) for n in names},
            "summary": rows,
            "deployed": deployed,
            "sqnr_db": {n: f.sqnr_db for n, f in fid.items()},
            "not_deployed": left_out,
            "fastest_off_the_shelf": best_shelf,
            "deployed_vs_off_the_shelf": vs_shelf,
            "gemm_floor": {
                "gop": ops * args.batch / 1e9,
                "int8_gop_per_s": peak.int8_ops_per_s / 1e9,
                "fp32_gop_per_s": peak.fp32_ops_per_s / 1e9,
                "int8_floor_ms": floor,
                "int8_exact_floor_ms": exact_floor,
            },
        }
        for r in runners.values():
            r.__exit__(None, None, None)
    if args.out:
        Path(args.out).write_text(
            json.dumps({"environment": env, "batch": args.batch, "results": figures}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
