"""What the commands share: argument groups, argparse ``type=`` validators, model helpers.

A validator raises :class:`argparse.ArgumentTypeError`, which the parser reports as one line
naming the option (``argument --threads: ...``) with exit code 2, before any work starts.
Validators return the argument as given (paths stay strings), so commands see the values they
always did. Nothing here imports torch or ONNX Runtime at module level.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError

MAX_BATCH = 256
MAX_IMG_SIZE = 1536
MAX_CLASSES = 100_000
MAX_ROUNDS = 1_000
MAX_ITERATIONS = 100_000
MIN_WORKSPACE_MB = 64  # what TrtBuildConfig accepts
MAX_WORKSPACE_MB = 1 << 20  # 1 TiB
MIN_OPSET = 18  # torch's dynamo exporter writes opset 18 for anything it cannot convert to

ArgError = argparse.ArgumentTypeError


def int_in(lo: int, hi: int | None = None, hint: str = "") -> Callable[[str], int]:
    """``type=`` for an integer in ``lo..hi`` (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ArgError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            span = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise ArgError(f"{value} is out of range; use {span}{hint}")
        return value

    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    """``type=`` for a finite number in ``[lo, hi]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ArgError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:  # also NaN
            raise ArgError(f"{text} is out of range; use a value in [{lo:g}, {hi:g}]")
        return value

    return parse


count = int_in(1, hint=" (more than there are images is fine: all are used)")
batch_size = int_in(1, MAX_BATCH)
rounds = int_in(1, MAX_ROUNDS)
iterations = int_in(1, MAX_ITERATIONS)
warmup = int_in(0, MAX_ITERATIONS)


def threads(text: str) -> int:
    """``type=`` for a thread count: 0 (all cores) up to this machine's core count."""
    n = os.cpu_count() or 1
    return int_in(0, n, f" (0: all; this machine has {n} cores)")(text)


def opset(text: str) -> int:
    """``type=`` for an ONNX opset the exporter really writes: 18 (torch's own) up to the
    newest the installed onnx converts to; outside that torch silently writes 18."""
    from onnx.defs import onnx_opset_version

    return int_in(MIN_OPSET, onnx_opset_version(), " (the opsets the exporter writes)")(text)


def _stat_failed(text: str, e: OSError) -> ArgError:
    return ArgError(f"'{text}': {e.strerror or type(e).__name__}; check the path")


def input_file(hint: str = "pass an existing file") -> Callable[[str], str]:
    """``type=`` for a readable existing file (not a folder)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise ArgError(f"empty path; {hint}")
        path = Path(text)
        try:
            if path.is_dir():
                raise ArgError(f"'{text}' is a folder; {hint}")
            if not path.is_file():
                raise ArgError(f"'{text}' does not exist; {hint}")
        except OSError as e:
            raise _stat_failed(text, e) from None
        if not os.access(path, os.R_OK):
            raise ArgError(f"'{text}' is not readable; fix its permissions")
        return text

    return parse


def image_dir(text: str) -> str:
    """``type=`` for a folder of images (an empty string is not the current folder)."""
    hint = "pass a folder of JPEG/PNG (or leave the option out for the bundled photos)"
    if not text.strip():
        raise ArgError(f"empty path; {hint}")
    if not Path(text).is_dir():
        state = "is a file" if os.path.lexists(text) else "does not exist"
        raise ArgError(f"image folder '{text}' {state}; {hint}")
    return text


def _check_writable(folder: Path, text: str) -> None:
    """Raise unless ``folder`` exists or can be created, and can be written: its nearest
    existing ancestor is a writable folder."""
    anchor = folder
    while not os.path.lexists(anchor) and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise ArgError(
            f"'{anchor}' is a file, so '{text}' cannot be written there; "
            "move it or choose another path"
        )
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ArgError(
            f"folder '{anchor}' is not writable, so '{text}' cannot be written; "
            "choose another path or fix its permissions"
        )


def output_file(*suffixes: str) -> Callable[[str], str]:
    """``type=`` for a file to write (atomically, so its folder must be writable), optionally
    ending in one of ``suffixes``."""

    def parse(text: str) -> str:
        if not text.strip():
            raise ArgError("empty path; pass a file name")
        if suffixes and not text.endswith(suffixes):
            raise ArgError(f"'{text}': the file name must end in {' or '.join(suffixes)}")
        path = Path(text)
        try:
            if path.is_dir() or text.endswith(("/", os.sep)):
                raise ArgError(f"'{text}' is a folder; pass a file path")
            _check_writable(path.parent, text)
        except OSError as e:
            raise _stat_failed(text, e) from None
        return text

    return parse


def output_dir(text: str) -> str:
    """``type=`` for a folder to write files into."""
    if not text.strip():
        raise ArgError("empty path; pass a folder")
    try:
        if os.path.lexists(text) and not Path(text).is_dir():
            raise ArgError(f"'{text}' is a file; pass a folder")
        _check_writable(Path(text), text)
    except OSError as e:
        raise _stat_failed(text, e) from None
    return text


def run_folder(text: str) -> str:
    """``type=`` for a run folder that is built beside itself and swapped in whole: its parent
    must be writable too."""
    output_dir(text)
    try:
        _check_writable(Path(text).absolute().parent, text)
    except OSError as e:
        raise _stat_failed(text, e) from None
    return text


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two spellings name the same file (relative paths, links, hard links)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_same(out: str | None, option: str, *inputs: tuple[str, str | None]) -> None:
    """Raise when the output ``out`` of ``option`` names one of the (what, path) ``inputs``."""
    for what, path in inputs:
        if out is not None and path is not None and same_file(out, path):
            raise ArgError(f"argument {option}: '{out}' is {what} '{path}'; pass another path")


def model_name(text: str) -> str:
    """``type=`` for --model: a variant name, or ``path/to/file.py:factory`` naming a file."""
    from ..model_ref import parse_model_ref

    try:
        ref = parse_model_ref(text)
    except SwinEdgeError as e:
        raise ArgError(str(e).removeprefix("--model ")) from None
    if ref is not None:
        input_file("pass path/to/file.py:factory")(str(ref.path))
    return text


def model_arg(text: str) -> str:
    """``type=`` for --model-arg KEY=VALUE."""
    key, sep, _ = text.partition("=")
    if not sep or not key.isidentifier():
        raise ArgError(f"{text!r}: use KEY=VALUE, e.g. depth=4 or act=gelu")
    return text


def three_floats(text: str) -> tuple[float, float, float]:
    """``type=`` for --mean/--std: ``R,G,B`` (or one value for all three)."""
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise ArgError(f"{text!r}: use three numbers R,G,B, e.g. 0.485,0.456,0.406") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(abs(v) < 1e6 for v in values):  # also NaN
        raise ArgError(f"{text!r}: use three numbers R,G,B, e.g. 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


def add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    """--mean, --std, --resize, --crop, --interpolation (over the model's own settings)."""
    g = parser.add_argument_group(
        "preprocessing (default: the model's own; needed for a model or ONNX without any)"
    )
    g.add_argument("--mean", type=three_floats, metavar="R,G,B", help="normalization mean")
    g.add_argument("--std", type=three_floats, metavar="R,G,B", help="normalization std")
    g.add_argument(
        "--resize", type=int_in(1, 4 * MAX_IMG_SIZE), help="shorter side after resizing, px"
    )
    g.add_argument(
        "--crop", type=int_in(1, MAX_IMG_SIZE), help="center crop, px (the model's input size)"
    )
    g.add_argument("--interpolation", choices=["bicubic", "bilinear", "nearest", "lanczos"])


def preprocess_flags(args: argparse.Namespace) -> Any:
    """The :class:`~swin_edge.model.PreprocessFlags` of the parsed arguments."""
    from ..model import PreprocessFlags

    return PreprocessFlags(
        mean=args.mean,
        std=args.std,
        resize=args.resize,
        crop=args.crop,
        interpolation=args.interpolation,
    )


def add_model_args(parser: argparse.ArgumentParser, headless: bool = False) -> None:
    """--model, --model-arg, --checkpoint, --img-size, --window-size, --num-classes and the
    preprocessing flags; ``headless`` allows ``--num-classes 0`` (no classifier)."""
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        type=model_name,
        default="swin_tiny",
        help="variant name (see `variants`), or path/to/file.py:factory: your own nn.Module",
    )
    g.add_argument(
        "--model-arg",
        type=model_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for a file.py:factory (a Python literal, else a string)",
    )
    g.add_argument(
        "--checkpoint",
        type=input_file("pass a Microsoft, timm or torchvision .pth"),
        help="Microsoft, timm or torchvision .pth (random if omitted); a state_dict for a "
        "file.py:factory model",
    )
    g.add_argument(
        "--img-size",
        type=int_in(1, MAX_IMG_SIZE),
        help="input resolution (default: the variant's, or the model's img_size)",
    )
    g.add_argument(
        "--window-size",
        type=int_in(1, MAX_IMG_SIZE),
        help="attention window (default: the variant's)",
    )
    lo, hint = (0, " (0: no classifier)") if headless else (1, " (a classifier needs a class)")
    g.add_argument(
        "--num-classes",
        type=int_in(lo, MAX_CLASSES, hint),
        help="classifier classes (default: checkpoint's)",
    )
    add_preprocess_args(parser)


def model_from_args(args: argparse.Namespace, features_only: bool = False) -> Any:
    """The model the arguments describe: a :class:`~swin_edge.model.SwinTransformer`, or a
    :class:`~swin_edge.model.UserModel` for ``--model file.py:factory``."""
    from ..model import load_model

    return load_model(
        args.model,
        checkpoint=args.checkpoint,
        features_only=features_only,
        img_size=args.img_size,
        window_size=args.window_size,
        num_classes=args.num_classes,
        model_args=args.model_arg,
        preprocess=preprocess_flags(args),
    )


def add_image_args(parser: argparse.ArgumentParser, what: str, default_n: int) -> None:
    """--<what>-dir, --num-images, --seed."""
    parser.add_argument(
        f"--{what}-dir",
        type=image_dir,
        help="flat folder or ImageFolder tree of JPEG/PNG "
        "(default: the bundled public-domain photos)",
    )
    parser.add_argument(
        "--num-images",
        type=count,
        default=default_n,
        help=f"images sampled deterministically (default {default_n})",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")


def add_timing_args(parser: argparse.ArgumentParser) -> None:
    """Timed runs, warm-up and interleaved rounds, as ``build`` and ``compare`` time models."""
    parser.add_argument("--iterations", type=iterations, default=50, help="timed runs per model")
    parser.add_argument("--warmup", type=warmup, default=10, help="untimed runs first")
    parser.add_argument(
        "--rounds",
        type=rounds,
        default=5,
        help="interleaved timing rounds; speedups are medians of per-round ratios",
    )


def add_gemm_input_bits_arg(parser: argparse.ArgumentParser) -> None:
    """--gemm-input-bits: 7-bit GEMM inputs for x86 CPUs without VNNI (cpu recipe)."""
    parser.add_argument(
        "--gemm-input-bits",
        type=int,
        choices=[8, 7],
        default=8,
        help="cpu recipe: 7 puts the uint8 inputs of the weight GEMMs on 128 levels, so x86 "
        "CPUs without VNNI (AVX2) run the model exactly with their fast kernels in any runtime "
        "(Triton's too), for about 2-5 dB of SQNR (default 8: exact there via ONNX Runtime's "
        "slower u8u8 kernels, and on such CPUs build and select-runtime also time the 7-bit "
        "model and deploy it when faster and within --max-sqnr-drop)",
    )


def add_sqnr_drop_arg(parser: argparse.ArgumentParser) -> None:
    """--max-sqnr-drop: the CPU runtime selection's fidelity rule."""
    from ..runtime_select import MAX_SQNR_DROP_DB, SQNR_ALWAYS_OK_DB

    parser.add_argument(
        "--max-sqnr-drop",
        type=float_in(0.0, 1000.0),
        default=MAX_SQNR_DROP_DB,
        metavar="DB",
        help="CPU runtime selection: never deploy a candidate whose output SQNR vs FP32 on the "
        f"check images is more than DB below the best candidate's (and under "
        f"{SQNR_ALWAYS_OK_DB:g} dB; default {MAX_SQNR_DROP_DB:g})",
    )


def check_iterations_per_round(args: argparse.Namespace) -> None:
    """--iterations is spread over --rounds (a runtime selection's budget): one per round."""
    if args.iterations < args.rounds:
        raise ArgError(
            f"argument --iterations: {args.iterations} is spread over --rounds {args.rounds}; "
            "give at least one per round"
        )


def add_trt_args(parser: argparse.ArgumentParser) -> None:
    """--workspace, --opt-level, --dla."""
    g = parser.add_argument_group("TensorRT")
    g.add_argument(
        "--workspace",
        type=int_in(MIN_WORKSPACE_MB, MAX_WORKSPACE_MB, " MiB"),
        default=2048,
        help="workspace limit, MiB",
    )
    g.add_argument(
        "--opt-level", type=int_in(0, 5), default=3, help="builder optimization level 0-5"
    )
    g.add_argument(
        "--dla",
        type=int_in(0, hint=" (DLA cores are numbered from 0)"),
        metavar="CORE",
        help="Jetson DLA core (GPU fallback on)",
    )


def model_or_onnx(args: argparse.Namespace) -> Any:
    """--onnx as an :class:`~swin_edge.export.onnx_import.OnnxModel`, else the --model."""
    if getattr(args, "onnx", None) is None:
        return model_from_args(args)
    from ..export.onnx_import import load_onnx_model

    return load_onnx_model(args.onnx, preprocess_flags(args))


def refuse_with_onnx(args: argparse.Namespace) -> None:
    """With --onnx, refuse the options that describe a model to export."""
    given = [
        option
        for option, value in (
            ("--model", args.model != "swin_tiny"),
            ("--checkpoint", args.checkpoint),
            ("--img-size", args.img_size),
            ("--window-size", args.window_size),
            ("--num-classes", args.num_classes),
            ("--model-arg", args.model_arg),
        )
        if value
    ]
    if args.onnx is not None and given:
        raise ArgError(
            f"argument --onnx: it starts from '{args.onnx}' as it is; drop {', '.join(given)} "
            "(they describe a model to export)"
        )


def fidelity_line(fid: dict[str, Any]) -> str:
    """``agreement 0.998 cosine 0.99990 SQNR 35.1 dB`` (without agreement for feature maps,
    where cosine and SQNR are the lowest over the outputs)."""
    worst = "" if fid.get("top1_agreement") is not None else " (worst output)"
    agree = "" if worst else f"agreement {fid['top1_agreement']:.3f} "
    sqnr = "exact" if fid.get("exact") else f"SQNR {fid['sqnr_db']:.1f} dB"
    return f"{agree}cosine {fid['cosine']:.5f} {sqnr}{worst}"


def preprocess_of(onnx_path: str) -> Any:
    """The preprocessing stored in an exported model's metadata."""
    from ..export import read_model_config
    from ..model.user import preprocess_from_config

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
    return preprocess_from_config(cfg)
