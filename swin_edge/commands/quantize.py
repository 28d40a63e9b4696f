"""``quantize``: FP32 ONNX -> Q/DQ INT8 ONNX (:func:`swin_edge.quantize.quantize_onnx`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "quantize"
HELP = "FP32 ONNX -> INT8 Q/DQ ONNX with calibration images (recipe: cpu or tensorrt)"
DESCRIPTION = (
    "Post-training INT8 quantization with calibration images, preprocessed as the model "
    "expects. Recipes: cpu (uint8 activations, fastest in ONNX Runtime on x86) and tensorrt "
    "(symmetric int8, zero point 0). LayerNorm, Softmax, GELU and bias/residual sums stay float."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "onnx",
        type=common.input_file("run `python -m swin_edge export` first"),
        help="FP32 model from `export`",
    )
    parser.add_argument(
        "--out",
        type=common.output_file(),
        help="output path (default: <model>.int8-<target>.onnx)",
    )
    parser.add_argument("--target", default="cpu", choices=["cpu", "tensorrt"])
    parser.add_argument(
        "--engine",
        default="ort",
        choices=["ort", "nncf"],
        help="ONNX Runtime quantize_static or NNCF",
    )
    parser.add_argument(
        "--calibration", default="minmax", choices=["minmax", "entropy", "percentile"]
    )
    parser.add_argument(
        "--percentile",
        type=common.float_in(90.0, 100.0),
        default=99.999,
        help="for --calibration percentile",
    )
    parser.add_argument(
        "--scale-dtype",
        default="auto",
        choices=["auto", "fp16", "fp32"],
        help="Q/DQ scale type; auto: fp16 for tensorrt (an INT8 + FP16 model whose DQ outputs "
        "are FP16 in a strongly typed engine), fp32 for cpu",
    )
    common.add_gemm_input_bits_arg(parser)
    parser.add_argument(
        "--keep-float",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep matching layers in float, e.g. fc2 or downsample (repeatable)",
    )
    parser.add_argument(
        "--layers",
        type=common.int_in(0),
        default=0,
        metavar="N",
        help="print the N layers with the lowest SQNR",
    )
    parser.add_argument(
        "--ort-out",
        type=common.output_file(),
        metavar="PATH",
        help="also write the model lowered for ONNX Runtime (uint8 Gemms as MatMulIntegerToFloat)",
    )
    common.add_image_args(parser, "calib", 300)


def out_path(args: argparse.Namespace) -> str:
    """--out, or <model>.int8-<target>.onnx beside the input."""
    return args.out or str(Path(args.onnx).with_suffix("")) + f".int8-{args.target}.onnx"


def check(args: argparse.Namespace) -> None:
    out = out_path(args)
    common.refuse_same(out, "--out", ("the input model", args.onnx))
    common.refuse_same(args.ort_out, "--ort-out", ("the input model", args.onnx), ("--out", out))


def run(args: argparse.Namespace) -> int:
    import onnx

    from ..calibration import load_images
    from ..onnx_check import check_image_model_file
    from ..quantize import QuantRecipe, quantize_onnx

    recipe = QuantRecipe(
        target=args.target,
        engine=args.engine,
        calibration=args.calibration,
        percentile=args.percentile,
        keep_float=tuple(args.keep_float),
        scale_dtype=args.scale_dtype,
        gemm_input_bits=args.gemm_input_bits,
    )
    pp = common.preprocess_of(args.onnx)
    check_image_model_file(args.onnx, allow_quantized=False)  # before reading any image
    images = load_images(args.calib_dir, pp, args.num_images, args.seed)
    out = out_path(args)
    res = quantize_onnx(args.onnx, out, images.images, recipe)
    print(
        f"wrote {res.path}: {args.engine} engine, {args.target} recipe, "
        f"{res.num_calibration} calibration images, {len(res.quantized_nodes)} nodes "
        f"quantized, {len(res.kept_float)} kept float, {res.qdq_counts}"
    )
    graph = onnx.load(args.onnx, load_external_data=False).graph
    placement = res.placement({n.name: n.op_type for n in graph.node})
    counts = ", ".join(f"{n} {op}" for op, n in sorted(placement["quantized_by_op"].items()))
    print(f"quantized: {counts or 'no GEMM/MatMul/Conv'}")
    for reason in dict.fromkeys(placement["kept_float"].values()):  # what stayed float, and why
        names = [n for n, r in placement["kept_float"].items() if r == reason]
        print(f"kept float ({reason}): {', '.join(names)}")
    if args.ort_out:
        from ..backends.onnxrt_lowering import lower_file

        n = lower_file(res.path, args.ort_out)
        print(f"wrote {args.ort_out}: {n} Gemms lowered to MatMulIntegerToFloat")
    if args.layers:
        from ..layerwise import per_layer_sqnr

        worst = per_layer_sqnr(args.onnx, out, images.images[: min(8, len(images))])
        print("worst layers by SQNR (dB):")
        for name, db in worst[: args.layers]:
            print(f"  {db:6.1f}  {name}")
    return 0
