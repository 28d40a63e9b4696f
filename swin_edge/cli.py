"""Command line: ``python -m swin_edge <command>``. Each command calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
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

    overrides = {
        "img_size": args.img_size,
        "window_size": args.window_size,
        "num_classes": args.num_classes,
    }
    return create_model(
        args.model,
        checkpoint=args.checkpoint,
        features_only=features_only,
        **{k: v for k, v in overrides.items() if v is not None},
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m swin_edge",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

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

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Later modules append (subparsers) -> None registrars here to keep this file thin.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


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
