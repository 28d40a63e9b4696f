"""``lint``: exit 1 if an ONNX has dynamic-shape ops or ops TensorRT cannot parse."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SwinEdgeError
from . import common

NAME = "lint"
HELP = "check an ONNX file is static and TensorRT-parsable"
DESCRIPTION = (
    "Exit 1 when dynamic-shape ops (Shape, Mod, NonZero, ConstantOfShape, Range, computed "
    "Reshape/Pad/Slice shapes) or ops outside TensorRT's ONNX support remain."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", type=common.input_file("pass an .onnx file"), help="model to check")
    parser.add_argument("--static-batch", action="store_true", help="also require a fixed batch")


def run(args: argparse.Namespace) -> int:
    from ..export import lint_onnx

    path = Path(args.onnx)
    try:
        report = lint_onnx(path, allow_dynamic_batch=not args.static_batch)
    except Exception as e:  # onnx raises DecodeError etc.
        raise SwinEdgeError(f"'{path}' is not a readable ONNX model ({type(e).__name__})") from None
    print(f"{path}: {report.summary()}")
    return 0 if report.ok else 1
