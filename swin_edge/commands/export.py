"""``export``: PyTorch -> static ONNX, linted (:func:`swin_edge.export.torch_to_onnx`)."""

from __future__ import annotations

import argparse

from . import common

NAME = "export"
HELP = "PyTorch -> static ONNX (roll and mask as constants), linted"
DESCRIPTION = (
    "Export a Swin model, or your own (--model path/to/file.py:factory), to ONNX with static "
    "shapes (only the batch may be dynamic) and lint it; nothing is written when the lint "
    "fails, and each dynamic op is named with the source line that made it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_args(parser, headless=True)
    parser.add_argument(
        "--out",
        type=common.output_file(),
        default="runs/export/model.onnx",
        help="output .onnx path",
    )
    parser.add_argument(
        "--opset",
        type=common.opset,
        default=common.MIN_OPSET,
        help=f"ONNX opset (>= {common.MIN_OPSET}, up to the installed onnx's newest)",
    )
    parser.add_argument(
        "--batch", type=common.batch_size, default=1, help="batch size of the exported input"
    )
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch axis symbolic")
    parser.add_argument(
        "--features-only",
        action="store_true",
        help="export the 4 stage feature maps (backbone) instead of logits",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")


def run(args: argparse.Namespace) -> int:
    from ..export import ExportConfig, torch_to_onnx

    model = common.model_from_args(args, features_only=args.features_only)
    cfg = ExportConfig(opset=args.opset, batch_size=args.batch, dynamic_batch=args.dynamic_batch)
    res = torch_to_onnx(model, args.out, cfg, verify=not args.no_verify)
    diff = "" if res.max_abs_diff is None else f", max |onnxruntime - torch| {res.max_abs_diff:.2e}"
    print(f"wrote {res.path}: {res.lint.summary()}{diff}")
    return 0
