"""Command line: ``python -m swin_edge <command>``. Each command calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import SwinEdgeError

DESCRIPTION = """\
Swin Transformer from PyTorch to fast, accurate INT8 on edge hardware.

commands:
  build     the whole pipeline: export -> quantize -> engine -> evaluate -> report
  export    PyTorch -> static ONNX (roll and mask as constants), linted
  lint      check an ONNX file is static and TensorRT-parsable
  quantize  FP32 ONNX -> INT8 Q/DQ ONNX with calibration images (recipe: cpu or tensorrt)
  compare   accuracy and latency of ONNX models against the FP32 one
  bench     latency benchmark; with --baseline, a CI regression gate
  report    render report.md and the chart from a report.json
  deploy    pack a TensorRT/Jetson bundle (ONNX + manifest + build script)
  engine    ONNX -> TensorRT engine with manifest, benchmarked (needs TensorRT)
  variants  list the named model variants
"""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="swin_tiny", help="variant name (see `variants`)")
    g.add_argument("--checkpoint", help="Microsoft, timm or torchvision .pth (random if omitted)")
    g.add_argument("--img-size", type=int, help="input resolution (default: the variant's)")
    g.add_argument("--window-size", type=int, help="attention window (default: the variant's)")
    g.add_argument("--num-classes", type=int, help="classifier classes (default: checkpoint's)")


def _model_from_args(args: argparse.Namespace, features_only: bool = False):
    from .model import create_model

    return create_model(
        args.model,
        checkpoint=args.checkpoint,
        features_only=features_only,
        img_size=args.img_size,
        window_size=args.window_size,
        num_classes=args.num_classes,
    )


def cmd_variants(args: argparse.Namespace) -> int:
    from .model import VARIANTS

    for name in sorted(VARIANTS):
        v = VARIANTS[name]
        print(
            f"{name:34s} embed {v['embed_dim']:3d} depths {v['depths']} "
            f"window {v['window_size']:2d} img {v['img_size']}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportConfig, torch_to_onnx

    model = _model_from_args(args, features_only=args.features_only)
    cfg = ExportConfig(opset=args.opset, batch_size=args.batch, dynamic_batch=args.dynamic_batch)
    res = torch_to_onnx(model, args.out, cfg, verify=not args.no_verify)
    diff = "" if res.max_abs_diff is None else f", max |onnxruntime - torch| {res.max_abs_diff:.2e}"
    print(f"wrote {res.path}: {res.lint.summary()}{diff}")
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    from .export import lint_onnx

    path = Path(args.onnx)
    if not path.is_file():
        raise SwinEdgeError(f"'{path}' does not exist; pass an .onnx file")
    try:
        report = lint_onnx(path, allow_dynamic_batch=not args.static_batch)
    except Exception as e:  # onnx raises DecodeError etc.
        raise SwinEdgeError(f"'{path}' is not a readable ONNX model ({type(e).__name__})") from None
    print(f"{path}: {report.summary()}")
    return 0 if report.ok else 1


def _preprocess_of(onnx_path: str):
    """The preprocessing stored in an exported model's metadata."""
    from .export import read_model_config
    from .model import SwinConfig

    path = Path(onnx_path)
    if not path.is_file():
        raise SwinEdgeError(f"'{path}' does not exist; run `python -m swin_edge export` first")
    try:
        cfg = read_model_config(path)
    except Exception as e:
        raise SwinEdgeError(f"'{path}' is not a readable ONNX model ({type(e).__name__})") from None
    if cfg is None:
        raise SwinEdgeError(
            f"'{path}' carries no swin_edge config (preprocessing); export it with "
            "`python -m swin_edge export`"
        )
    return SwinConfig.from_dict(cfg).preprocess


def _add_image_args(p: argparse.ArgumentParser, what: str, default_n: int) -> None:
    p.add_argument(
        f"--{what}-dir",
        help="flat folder or ImageFolder tree of JPEG/PNG "
        "(default: the bundled public-domain photos)",
    )
    p.add_argument(
        "--num-images",
        type=int,
        default=default_n,
        help=f"images sampled deterministically (default {default_n})",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def cmd_quantize(args: argparse.Namespace) -> int:
    from .calibration import load_images
    from .quantize import QuantRecipe, quantize_onnx

    recipe = QuantRecipe(
        target=args.target,
        engine=args.engine,
        calibration=args.calibration,
        percentile=args.percentile,
        keep_float=tuple(args.keep_float),
    )
    pp = _preprocess_of(args.onnx)
    images = load_images(args.calib_dir, pp, args.num_images, args.seed)
    out = args.out or str(Path(args.onnx).with_suffix("")) + f".int8-{args.target}.onnx"
    res = quantize_onnx(args.onnx, out, images.images, recipe)
    print(
        f"wrote {res.path}: {args.engine} engine, {args.target} recipe, "
        f"{res.num_calibration} calibration images, {len(res.quantized_nodes)} nodes "
        f"quantized, {len(res.kept_float)} kept float, {res.qdq_counts}"
    )
    if args.ort_out:
        from .backends.onnxrt_lowering import lower_file

        n = lower_file(res.path, args.ort_out)
        print(f"wrote {args.ort_out}: {n} Gemms lowered to MatMulIntegerToFloat")
    if args.layers:
        from .layerwise import per_layer_sqnr

        worst = per_layer_sqnr(args.onnx, out, images.images[: min(8, len(images))])
        print("worst layers by SQNR (dB):")
        for name, db in worst[: args.layers]:
            print(f"  {db:6.1f}  {name}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:

    from .backends.onnxrt import OnnxrtRunner, OrtConfig
    from .calibration import load_images
    from .evaluate import Candidate, evaluate

    pp = _preprocess_of(args.models[0])
    data = load_images(args.eval_dir, pp, args.num_images, args.seed)
    cands = [
        Candidate(Path(m).stem, "onnxruntime", "fp32" if i == 0 else "int8", Path(m))
        for i, m in enumerate(args.models)
    ]
    cfg = OrtConfig(threads=args.threads, lower_int8=not args.no_lowering)
    results = evaluate(
        cands,
        data.images,
        data.labels,
        lambda c: OnnxrtRunner(c.path, cfg),
        args.iterations,
        args.warmup,
    )
    base = results[0].latency.p50_ms
    for r in results:
        acc = f"top-1 {r.accuracy.top1:.4f} top-5 {r.accuracy.top5:.4f}" if r.accuracy else ""
        fid = (
            f"agreement {r.fidelity.top1_agreement:.3f} cosine {r.fidelity.cosine:.5f} "
            f"SQNR {r.fidelity.sqnr_db:.1f} dB"
            if r.fidelity
            else "reference"
        )
        print(
            f"{r.name:32s} p50 {r.latency.p50_ms:7.2f} ms ({base / r.latency.p50_ms:.2f}x) "
            f"{acc} {fid}"
        )
    if args.json:
        from .utils import write_json_atomic

        write_json_atomic(args.json, [r.to_dict() for r in results])
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import BuildConfig, build

    cfg = BuildConfig(
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
        out=args.out,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        threads=args.threads,
        iterations=args.iterations,
        warmup=args.warmup,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        dla_core=args.dla,
    )
    res = build(cfg, progress=not args.no_progress)
    rows = res.report["results"]
    base = rows[0]["latency"]["p50_ms"]
    print(f"target {res.target}; artifacts in {res.out_dir}/")
    for r in rows:
        q = (
            f"top-1 {r['accuracy']['top1']:.4f}"
            if r["accuracy"]
            else f"agreement {r['fidelity']['top1_agreement']:.3f} "
            f"cosine {r['fidelity']['cosine']:.4f}"
            if r["fidelity"]
            else "reference"
        )
        print(
            f"  {r['name']:20s} p50 {r['latency']['p50_ms']:8.2f} ms "
            f"({base / r['latency']['p50_ms']:.2f}x)  {q}"
        )
    print(f"report: {res.artifacts['report_md']} (+ report.json, report.png)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import load_report, write_report

    report = load_report(args.json)
    paths = write_report(report, Path(args.out or Path(args.json).parent))
    print(f"wrote {paths['md']} and {paths['png']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from .bench import (
        gate,
        gate_markdown,
        interleaved_latency,
        parse_percent,
        read_baseline,
        write_baseline,
    )
    from .utils import write_text_atomic

    max_reg = parse_percent(args.max_regression)
    baseline = read_baseline(args.baseline) if args.baseline else None
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
            threads=args.threads,
            as_written=models if args.no_lowering else (),
        )
    print(f"{len(res.names)} models, {args.rounds} interleaved rounds x {args.iterations} runs")
    ref = res.names[0]
    for name in res.names:
        print(
            f"  {name:16s} p50 {res.p50(name):8.2f} ms  ratio to {ref} {res.ratio(name, ref):.3f}"
        )
    num, den = args.numerator, args.denominator
    if args.write_baseline:
        write_baseline(args.write_baseline, res, num, den, note=args.note or "")
        print(f"wrote baseline {args.write_baseline}: {num}/{den} = {res.ratio(num, den):.3f}")
    if baseline is None:
        return 0
    result = gate(res, baseline, max_reg)
    md = gate_markdown(result, baseline["numerator"], baseline["denominator"])
    print(md)
    for target in filter(None, [args.summary, os.environ.get("GITHUB_STEP_SUMMARY")]):
        write_text_atomic(target, md)
    return 0 if result.passed else 1


def _bench_pair(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """Export + quantize (cpu recipe) the --model into ``work``: {'fp32': ..., 'int8': ...}."""
    from .calibration import load_images
    from .export import torch_to_onnx
    from .quantize import QuantRecipe, quantize_onnx

    model = _model_from_args(args)
    fp32 = torch_to_onnx(model, work / "fp32.onnx", verify=False).path
    images = load_images(None, model.cfg.preprocess, args.num_calib).images
    quantize_onnx(fp32, work / "int8.onnx", images, QuantRecipe(target="cpu"))
    return {"fp32": str(fp32), "int8": str(work / "int8.onnx")}


def cmd_deploy(args: argparse.Namespace) -> int:
    import tempfile

    from .calibration import load_images
    from .deploy import DeployConfig, make_bundle
    from .export import ExportConfig, torch_to_onnx
    from .quantize import QuantRecipe, quantize_onnx

    cfg = DeployConfig(
        precision=args.precision,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        max_batch=args.max_batch,
        dla_core=args.dla,
    )
    model = _model_from_args(args)
    with tempfile.TemporaryDirectory() as work:
        fp32 = torch_to_onnx(
            model, Path(work) / "model.onnx", ExportConfig(dynamic_batch=True)
        ).path
        int8, sha = None, None
        if args.precision == "int8":
            calib = load_images(args.calib_dir, model.cfg.preprocess, args.num_images, args.seed)
            int8 = quantize_onnx(
                fp32,
                Path(work) / "model.int8.onnx",
                calib.images,
                QuantRecipe(target="tensorrt", engine=args.engine),
            ).path
            sha = calib.digest
        out = make_bundle(args.out, fp32, int8, model.cfg.to_dict(), cfg, sha)
    print(f"wrote {out}: copy it to the device, untar, run ./build_engine.sh {args.precision}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    from .backends.tensorrt import TrtBuildConfig, TrtRunner, onnx_to_engine

    cfg = TrtBuildConfig(
        precision=args.precision,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        max_batch=args.max_batch,
        timing_cache=args.timing_cache,
        dla_core=args.dla,
    )
    if not Path(args.onnx).is_file():
        raise SwinEdgeError(f"'{args.onnx}' does not exist; pass the ONNX to build from")
    out = args.out or str(Path(args.onnx).with_suffix(f".{args.precision}.engine"))
    manifest = onnx_to_engine(args.onnx, out, cfg)
    print(
        f"wrote {out} (+ .json manifest) for {manifest['gpu_name']}, TensorRT "
        f"{manifest['tensorrt_version']}\nequivalent: {manifest['trtexec']}"
    )
    with TrtRunner(out) as runner:
        s = runner.benchmark(iterations=args.iterations, warmup=args.warmup)
    print(
        f"p50 {s.p50_ms:.3f} ms  p90 {s.p90_ms:.3f}  p99 {s.p99_ms:.3f}  "
        f"{s.throughput:.1f} img/s (batch {s.batch_size}, CUDA events)"
    )
    return 0


def _add_trt_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TensorRT")
    g.add_argument("--workspace", type=int, default=2048, help="workspace limit, MiB")
    g.add_argument("--opt-level", type=int, default=3, help="builder optimization level 0-5")
    g.add_argument("--dla", type=int, metavar="CORE", help="Jetson DLA core (GPU fallback on)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swin_edge",
        usage="python -m swin_edge [-h] command [options]",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # the ordered command list lives in DESCRIPTION; argparse would list them a second time
    sub = parser.add_subparsers(
        dest="command",
        metavar="command",
        required=True,
        help=argparse.SUPPRESS,
        prog="python -m swin_edge",
    )

    p = sub.add_parser("variants", help="list named variants")
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser(
        "export",
        help="PyTorch -> static ONNX",
        description="Export a Swin model to ONNX with static shapes (only the batch "
        "may be dynamic) and lint it; nothing is written when the lint fails.",
    )
    _add_model_args(p)
    p.add_argument("--out", default="runs/export/model.onnx", help="output .onnx path")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the exported input")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch axis symbolic")
    p.add_argument(
        "--features-only",
        action="store_true",
        help="export the 4 stage feature maps (backbone) instead of logits",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "lint",
        help="check an ONNX file is static",
        description="Exit 1 when dynamic-shape ops (Shape, Mod, NonZero, "
        "ConstantOfShape, Range, computed Reshape/Pad/Slice shapes) or ops outside "
        "TensorRT's ONNX support remain.",
    )
    p.add_argument("onnx", help="model to check")
    p.add_argument("--static-batch", action="store_true", help="also require a fixed batch")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser(
        "quantize",
        help="FP32 ONNX -> INT8 Q/DQ ONNX",
        description="Post-training INT8 quantization with calibration images, "
        "preprocessed as the model expects. Recipes: cpu (uint8 activations, "
        "fastest in ONNX Runtime on x86) and tensorrt (symmetric int8, zero "
        "point 0). LayerNorm, Softmax, GELU and bias/residual sums stay float.",
    )
    p.add_argument("onnx", help="FP32 model from `export`")
    p.add_argument("--out", help="output path (default: <model>.int8-<target>.onnx)")
    p.add_argument("--target", default="cpu", choices=["cpu", "tensorrt"])
    p.add_argument(
        "--engine",
        default="ort",
        choices=["ort", "nncf"],
        help="ONNX Runtime quantize_static or NNCF",
    )
    p.add_argument("--calibration", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--percentile", type=float, default=99.999, help="for --calibration percentile")
    p.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep matching layers in float, e.g. fc2 or downsample (repeatable)",
    )
    p.add_argument(
        "--layers", type=int, default=0, metavar="N", help="print the N layers with the lowest SQNR"
    )
    p.add_argument(
        "--ort-out",
        metavar="PATH",
        help="also write the model lowered for ONNX Runtime (uint8 Gemms as MatMulIntegerToFloat)",
    )
    _add_image_args(p, "calib", 300)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser(
        "compare",
        help="accuracy/fidelity and latency vs FP32",
        description="Top-1/top-5 when the image folder has class subfolders; "
        "otherwise top-1 agreement, top-5 overlap, cosine and SQNR against the "
        "first (FP32) model. Latency: warm-up, then p50/p90/p99.",
    )
    p.add_argument("models", nargs="+", help="ONNX models; the first is the FP32 reference")
    _add_image_args(p, "eval", 300)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    p.add_argument(
        "--no-lowering",
        action="store_true",
        help="run Q/DQ files exactly as written (default: uint8 Gemms as MatMulIntegerToFloat)",
    )
    p.add_argument("--iterations", type=int, default=50, help="timed runs per model")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    p.add_argument("--json", help="also write the results as JSON")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "build",
        help="whole pipeline",
        description="Export -> quantize -> engine (TensorRT when available, "
        "else ONNX Runtime) -> evaluate -> report, into --out. Works offline "
        "with the defaults (Swin-T config, bundled calibration photos).",
    )
    _add_model_args(p)
    p.add_argument(
        "--precision",
        default="int8",
        choices=["fp32", "fp16", "int8"],
        help="deployed precision (fp16 needs TensorRT); FP32 is the reference",
    )
    p.add_argument(
        "--target",
        default="auto",
        choices=["auto", "cpu", "tensorrt"],
        help="auto: TensorRT when usable (GPU, TensorRT >= 10, pycuda), else cpu",
    )
    p.add_argument("--calib-dir", help="calibration images (default: bundled photos)")
    p.add_argument("--eval-dir", help="evaluation images; class subfolders give top-1/top-5")
    p.add_argument("--num-calib", type=int, default=300, help="calibration images sampled")
    p.add_argument("--num-eval", type=int, default=300, help="evaluation images sampled")
    p.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    p.add_argument("--calibration", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--keep-float", action="append", default=[], metavar="PATTERN")
    p.add_argument("--out", help="run folder (default runs/<model>-<precision>)")
    p.add_argument("--batch", type=int, default=1, help="batch of the export and timing")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    p.add_argument("--iterations", type=int, default=50, help="timed runs per model")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_trt_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("report", help="render report.md/.png from report.json")
    p.add_argument("json", help="report.json written by build")
    p.add_argument("--out", help="folder (default: beside the json)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "bench",
        help="latency benchmark / CI regression gate",
        description="Time models in interleaved rounds; ratios are medians of "
        "per-round ratios. With --baseline, exit 1 when ratio numerator/"
        "denominator (default int8/fp32) regressed by more than "
        "--max-regression. Without --onnx, exports and quantizes --model.",
    )
    _add_model_args(p)
    p.add_argument("--onnx", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--no-lowering",
        action="store_true",
        help="run Q/DQ files exactly as written (default: uint8 Gemms as MatMulIntegerToFloat)",
    )
    p.add_argument("--num-calib", type=int, default=32, help="calibration images (no --onnx)")
    p.add_argument("--numerator", default="int8")
    p.add_argument("--denominator", default="fp32")
    p.add_argument("--baseline", help="baseline JSON (from --write-baseline)")
    p.add_argument("--max-regression", default="10%")
    p.add_argument("--summary", help="write the gate's Markdown summary here")
    p.add_argument("--write-baseline", metavar="FILE", help="save this run's ratio as baseline")
    p.add_argument("--note", help="note stored in a written baseline")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "deploy",
        help="TensorRT/Jetson bundle",
        description="Pack FP32/FP16/Q-DQ INT8 ONNX, a manifest and "
        "build_engine.sh (trtexec or swin_edge, records nvpmodel/jetson_clocks) "
        "into a .tar.gz to build the engine on the device.",
    )
    _add_model_args(p)
    p.add_argument("--out", default="bundle.tar.gz")
    p.add_argument("--precision", default="int8", choices=["fp32", "fp16", "int8"])
    p.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    p.add_argument("--max-batch", type=int, default=8)
    _add_image_args(p, "calib", 300)
    _add_trt_args(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser(
        "engine",
        help="ONNX -> TensorRT engine (+ manifest), benchmark",
        description="Build a strongly typed TensorRT engine (needs TensorRT >= "
        "10, pycuda and a GPU), write its manifest, time it with CUDA events.",
    )
    p.add_argument("onnx")
    p.add_argument(
        "--precision",
        default="int8",
        choices=["fp32", "fp16", "int8"],
        help="the ONNX's precision (int8: Q/DQ ONNX; fp16: FP16 ONNX)",
    )
    p.add_argument("--out")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--timing-cache")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=50)
    _add_trt_args(p)
    p.set_defaults(func=cmd_engine)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SwinEdgeError as e:
        print(f"swin_edge {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
