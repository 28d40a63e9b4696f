"""``deploy``: a .tar.gz bundle to build the engine on a Jetson/GPU (:mod:`swin_edge.deploy`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from . import common

NAME = "deploy"
HELP = "pack a TensorRT/Jetson or CPU bundle, or a Triton model repository (--format triton)"
DESCRIPTION = (
    "Pack FP32/FP16/Q-DQ INT8 ONNX, a manifest and build_engine.sh (trtexec or swin_edge, "
    "records nvpmodel/jetson_clocks) into a .tar.gz to build the engine on the device; with "
    "--target cpu, the models every CPU runtime can run (ONNX + OpenVINO IR), deploy.json and "
    "select_runtime.sh, which re-times the runtimes on the box that serves; with --format "
    "triton, write a Triton Inference Server model repository (TensorRT engine built on the "
    "device, ONNX Runtime/OpenVINO models, a JPEG-in ensemble) to the --out folder."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser)
    parser.add_argument(
        "--onnx",
        type=common.input_file("pass an FP32 .onnx file"),
        help="bundle this FP32 ONNX (exported elsewhere) instead of exporting --model",
    )
    parser.add_argument(
        "--target",
        default="tensorrt",
        choices=["tensorrt", "cpu"],
        help="tensorrt: a bundle that builds the engine on a GPU/Jetson; cpu: a bundle for "
        "ONNX Runtime/OpenVINO on an x86 box",
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
        help="static batch of a DLA or CPU bundle (TensorRT bundles otherwise have a dynamic "
        "batch 1..--max-batch)",
    )
    parser.add_argument(
        "--precision",
        default="int8",
        choices=["fp32", "fp16", "bf16", "int8"],
        help="fp16: TensorRT only; bf16: CPU bundles (OpenVINO on AMX-BF16/AVX512-BF16 CPUs)",
    )
    parser.add_argument("--engine", default="ort", choices=["ort", "nncf"], help="quantizer")
    common.add_gemm_input_bits_arg(parser)
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
    g = parser.add_argument_group("CPU bundle (--target cpu)")
    g.add_argument(
        "--no-select",
        action="store_true",
        help="do not time the runtimes on this machine (the target runs select_runtime.sh)",
    )
    common.add_timing_args(g)
    common.add_sqnr_drop_arg(g)
    common.add_image_args(parser, "calib", 300)
    common.add_trt_args(parser)


def check(args: argparse.Namespace) -> None:
    cpu_models = args.target == "cpu" or args.format == "triton"
    if args.gemm_input_bits != 8 and (args.precision != "int8" or not cpu_models):
        raise common.ArgError(
            "argument --gemm-input-bits: 7 is for the cpu recipe's INT8 models (--target cpu, "
            "or the CPU models of --format triton)"
        )
    if args.target == "cpu":
        _check_cpu(args)
    elif args.precision == "bf16":
        raise common.ArgError(
            "argument --precision: bf16 is a CPU precision; add --target cpu (TensorRT bundles "
            "take fp32, fp16 or int8)"
        )
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


def _check_cpu(args: argparse.Namespace) -> None:
    if args.format == "triton":
        raise common.ArgError(
            "argument --target: a Triton repository for a CPU server is --format triton "
            "--triton-target cpu (drop --target cpu)"
        )
    if args.precision == "fp16":
        raise common.ArgError(
            "argument --precision: fp16 runs on TensorRT only; a CPU bundle takes fp32, bf16 "
            "(CPUs with AMX-BF16 or AVX512-BF16) or int8"
        )
    if args.dla is not None:
        raise common.ArgError("argument --dla: DLA is a Jetson TensorRT option; drop --target cpu")
    common.check_iterations_per_round(args)


def run(args: argparse.Namespace) -> int:
    if args.target == "cpu":
        return _run_cpu(args)
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
        int8, cpu_int8, cpu_int8_7bit, sha = None, None, None, None
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
                    QuantRecipe(
                        target="cpu", engine=args.engine, gemm_input_bits=args.gemm_input_bits
                    ),
                ).path
                if args.gemm_input_bits == 8:  # for x86 servers without VNNI/AMX
                    cpu_int8_7bit = _seven_bit(
                        cpu_int8, Path(work) / "model.int8-cpu7.onnx", "CPU model"
                    )
        bundle_path = Path(work) / "bundle.tar.gz" if args.format == "triton" else args.out
        out = make_bundle(bundle_path, fp32, int8, model.cfg.to_dict(), cfg, sha)
        if args.format == "triton":
            from ..triton.deployment import write_deploy_repository

            res = write_deploy_repository(
                args.out,
                base=re.sub(r"[^A-Za-z0-9_.-]+", "_", model.cfg.name),  # Triton model names
                precision=args.precision,
                fp32_onnx=fp32,
                int8_onnx=int8,
                bundle=out,
                preprocess=model.cfg.preprocess,
                cpu_int8_onnx=cpu_int8,
                cpu_int8_7bit_onnx=cpu_int8_7bit,
                target=args.triton_target,
                max_batch_size=args.max_batch,
                queue_delay_us=args.queue_delay_us,
                dynamic_batching=not args.no_dynamic_batching,
                ensemble=not args.no_ensemble,
            )
            build = "on the device run ./build_engines.sh, then " if res.pending_engines else ""
            print(
                f"wrote {res.path}: {', '.join(res.models)}; {build}"
                f"tritonserver --model-repository {res.path}"
            )
            return 0
    print(f"wrote {out}: copy it to the device, untar, run ./build_engine.sh {args.precision}")
    return 0


def _seven_bit(int8: Path, dst: Path, what: str) -> Path | None:
    """The 7-bit GEMM-input twin of ``int8`` at ``dst``, or None with a stderr note naming
    ``what`` is left out when the pass refuses the model."""
    from ..quantize.u8s8_safe import seven_bit_candidate

    seven, why = seven_bit_candidate(int8, dst)
    if why:
        print(f"note: no 7-bit GEMM-input {what}: {why}", file=sys.stderr)
    return seven


def _run_cpu(args: argparse.Namespace) -> int:
    import tempfile

    from ..calibration import load_images
    from ..cpu_bundle import CHECK_IMAGES, CpuBundleConfig, make_cpu_bundle
    from ..export import ExportConfig
    from ..export.onnx_import import to_onnx
    from ..quantize import QuantRecipe, quantize_onnx
    from ..quantize.nncf_engine import onnx_to_int8_openvino

    cfg = CpuBundleConfig(
        precision=args.precision,
        select=not args.no_select,
        rounds=args.rounds,
        iterations=args.iterations // args.rounds,
        warmup=args.warmup,
        max_sqnr_drop_db=args.max_sqnr_drop,
    )
    model = common.model_or_onnx(args)
    pp = model.cfg.preprocess
    with tempfile.TemporaryDirectory() as work:
        fp32 = to_onnx(model, Path(work) / "model.onnx", ExportConfig(batch_size=args.batch)).path
        int8, ov_int8, seven, sha = None, None, None, None
        if args.precision == "int8":
            calib = load_images(args.calib_dir, pp, args.num_images, args.seed)
            images, sha = calib.images, calib.digest
            recipe = QuantRecipe(
                target="cpu", engine=args.engine, gemm_input_bits=args.gemm_input_bits
            )
            int8 = quantize_onnx(fp32, Path(work) / "int8.onnx", images, recipe).path
            ov_int8 = onnx_to_int8_openvino(fp32, Path(work) / "int8-openvino.onnx", images)
            if recipe.gemm_input_bits == 8:  # for targets whose u8s8 kernels clamp
                seven = _seven_bit(int8, Path(work) / "int8-cpu7.onnx", "model in the bundle")
        else:  # the check images only
            n = min(args.num_images, CHECK_IMAGES)
            images = load_images(args.calib_dir, pp, n, args.seed).images
        res = make_cpu_bundle(
            args.out, fp32, model.cfg.to_dict(), images, cfg, int8, ov_int8, sha, seven
        )
    where = (
        f"chose {res.selection.chosen.key} on this machine"
        if res.selection
        else res.note or "no runtime chosen here (--no-select)"
    )
    print(
        f"wrote {res.path} ({where}): copy it to the CPU box, untar it into a folder and run "
        "./select_runtime.sh there"
    )
    return 0
