"""``deploy``: a .tar.gz bundle to build the engine on a Jetson/GPU (:mod:`swin_edge.deploy`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "deploy"
HELP = "pack a TensorRT/Jetson bundle (ONNX + manifest + build script)"
DESCRIPTION = (
    "Pack FP32/FP16/Q-DQ INT8 ONNX, a manifest and build_engine.sh (trtexec or swin_edge, "
    "records nvpmodel/jetson_clocks) into a .tar.gz to build the engine on the device."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser)
    parser.add_argument(
        "--onnx",
        type=common.input_file("pass an FP32 .onnx file"),
        help="bundle this FP32 ONNX (exported elsewhere) instead of exporting --model",
    )
    parser.add_argument(
        "--out", type=common.output_file(".tar.gz", ".tgz"), default="bundle.tar.gz"
    )
    parser.add_argument("--precision", default="int8", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    parser.add_argument("--max-batch", type=common.batch_size, default=8)
    common.add_image_args(parser, "calib", 300)
    common.add_trt_args(parser)


def check(args: argparse.Namespace) -> None:
    common.refuse_with_onnx(args)
    if args.dla is not None:  # DLA runs FP16 only
        from ..backends.tensorrt import check_dla_request

        check_dla_request(args.dla, args.precision, dynamic_batch=False)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..calibration import load_images
    from ..deploy import DeployConfig, make_bundle
    from ..export import ExportConfig
    from ..export.onnx_import import to_onnx
    from ..quantize import QuantRecipe, quantize_onnx

    cfg = DeployConfig(
        precision=args.precision,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        max_batch=args.max_batch,
        dla_core=args.dla,
    )
    model = common.model_or_onnx(args)  # --onnx: used as it is
    with tempfile.TemporaryDirectory() as work:
        fp32 = to_onnx(model, Path(work) / "model.onnx", ExportConfig(dynamic_batch=True)).path
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
