"""``deploy``: a .tar.gz bundle to build the engine on a Jetson/GPU (:mod:`swin_edge.deploy`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from . import common

NAME = "deploy"
HELP = "pack a TensorRT/Jetson bundle, or a Triton model repository (--format triton)"
DESCRIPTION = (
    "Pack FP32/FP16/Q-DQ INT8 ONNX, a manifest and build_engine.sh (trtexec or swin_edge, "
    "records nvpmodel/jetson_clocks) into a .tar.gz to build the engine on the device; with "
    "--format triton, write a Triton Inference Server model repository (TensorRT engine built "
    "on the device, ONNX Runtime/OpenVINO models, a JPEG-in ensemble) to the --out folder."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser)
    parser.add_argument(
        "--onnx",
        type=common.input_file("pass an FP32 .onnx file"),
        help="bundle this FP32 ONNX (exported elsewhere) instead of exporting --model",
    )
    parser.add_argument(
        "--format",
        default="bundle",
        choices=["bundle", "triton"],
        help="bundle: a .tar.gz to build on the device; triton: a model repository folder",
    )
    parser.add_argument(
        "--out", help="bundle.tar.gz (bundle) or a repository folder (triton; default triton_repo)"
    )
    parser.add_argument(
        "--batch",
        type=common.batch_size,
        default=1,
        help="static batch of a DLA bundle (other bundles have a dynamic batch 1..--max-batch)",
    )
    parser.add_argument("--precision", default="int8", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    parser.add_argument("--max-batch", type=common.batch_size, default=8)
    g = parser.add_argument_group("Triton (--format triton)")
    g.add_argument(
        "--triton-target",
        choices=["gpu", "jetson", "cpu"],
        help="what the server runs on (default: by this machine's architecture)",
    )
    g.add_argument(
        "--queue-delay-us",
        type=common.int_in(0, 10_000_000),
        default=2000,
        help="dynamic batching queue delay",
    )
    g.add_argument("--no-dynamic-batching", action="store_true")
    g.add_argument("--no-ensemble", action="store_true", help="no JPEG-in ensemble")
    common.add_image_args(parser, "calib", 300)
    common.add_trt_args(parser)


def check(args: argparse.Namespace) -> None:
    try:  # what --out must be depends on --format
        if args.format == "triton":
            args.out = common.run_folder(args.out or "triton_repo")
        else:
            args.out = common.output_file(".tar.gz", ".tgz")(args.out or "bundle.tar.gz")
    except common.ArgError as e:
        raise common.ArgError(f"argument --out: {e}") from None
    common.refuse_with_onnx(args)
    if args.dla is not None:  # DLA runs FP16 only
        from ..backends.tensorrt import check_dla_request

        check_dla_request(args.dla, args.precision, dynamic_batch=False)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..calibration import load_images
    from ..deploy import DeployConfig, deploy_export_config, make_bundle
    from ..export.onnx_import import to_onnx
    from ..quantize import QuantRecipe, quantize_onnx

    cfg = DeployConfig(
        precision=args.precision,
        workspace_mb=args.workspace,
        optimization_level=args.opt_level,
        max_batch=args.max_batch,
        dla_core=args.dla,
        batch=args.batch,
    )
    model = common.model_or_onnx(args)  # --onnx: used as it is
    with tempfile.TemporaryDirectory() as work:
        fp32 = to_onnx(model, Path(work) / "model.onnx", deploy_export_config(cfg)).path
        int8, cpu_int8, sha = None, None, None
        if args.precision == "int8":
            calib = load_images(args.calib_dir, model.cfg.preprocess, args.num_images, args.seed)
            int8 = quantize_onnx(
                fp32,
                Path(work) / "model.int8.onnx",
                calib.images,
                QuantRecipe(target="tensorrt", engine=args.engine),
            ).path
            sha = calib.digest
            if args.format == "triton":  # the CPU models of the repository
                cpu_int8 = quantize_onnx(
                    fp32,
                    Path(work) / "model.int8-cpu.onnx",
                    calib.images,
                    QuantRecipe(target="cpu", engine=args.engine),
                ).path
        bundle_path = Path(work) / "bundle.tar.gz" if args.format == "triton" else args.out
        out = make_bundle(bundle_path, fp32, int8, model.cfg.to_dict(), cfg, sha)
        if args.format == "triton":
            from ..triton.repository import write_deploy_repository

            res = write_deploy_repository(
                args.out,
                base=re.sub(r"[^A-Za-z0-9_.-]+", "_", model.cfg.name),  # Triton model names
                precision=args.precision,
                fp32_onnx=fp32,
                int8_onnx=int8,
                bundle=out,
                preprocess=model.cfg.preprocess,
                cpu_int8_onnx=cpu_int8,
                target=args.triton_target,
                max_batch_size=args.max_batch,
                queue_delay_us=args.queue_delay_us,
                dynamic_batching=not args.no_dynamic_batching,
                ensemble=not args.no_ensemble,
            )
            print(
                f"wrote {res.path}: {', '.join(res.models)}; on the device run "
                f"./build_engines.sh, then tritonserver --model-repository {res.path}"
            )
            return 0
    print(f"wrote {out}: copy it to the device, untar, run ./build_engine.sh {args.precision}")
    return 0
