"""``select-runtime``: pick the fastest CPU runtime for an extracted CPU bundle, on this box
(:func:`swin_edge.cpu_bundle.select_bundle`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "select-runtime"
HELP = "time and check a CPU bundle's runtimes on this box; write the fastest faithful one"
DESCRIPTION = (
    "On the box that serves: verify an extracted CPU bundle (deploy --target cpu), time every "
    "runtime/variant/thread count its models can run with in interleaved rounds, check each "
    "against the bundled FP32 outputs, and rewrite the bundle's deploy.json with the fastest "
    "faithful one. "
    "The bundle's select_runtime.sh runs this."
)


def _folder(text: str) -> str:
    if not Path(text).is_dir():
        raise common.ArgError(f"'{text}' is not a folder; extract the CPU bundle (.tar.gz) first")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=_folder, help="the extracted CPU bundle's folder")
    parser.add_argument(
        "--runtime",
        choices=["ort", "openvino"],
        help="pin ONNX Runtime or OpenVINO (default: time both when OpenVINO is installed)",
    )
    parser.add_argument(
        "--threads",
        type=common.threads,
        default=0,
        help="time only this thread count (0: 1, 2, 4, ... up to all cores)",
    )
    common.add_timing_args(parser)
    common.add_sqnr_drop_arg(parser)


def check(args: argparse.Namespace) -> None:
    common.check_iterations_per_round(args)


def run(args: argparse.Namespace) -> int:
    from ..cpu import cpu_info
    from ..cpu_bundle import select_bundle

    sel = select_bundle(
        args.bundle,
        args.runtime,
        [args.threads] if args.threads else None,
        args.rounds,
        args.iterations // args.rounds,
        args.warmup,
        args.max_sqnr_drop,
    )
    info = cpu_info()
    b = sel.benchmark
    print(
        f"{sel.precision} on {info.model} ({info.cpu_class}): {b['rounds']} interleaved rounds "
        f"of {b['iterations']} runs at batch {b['batch_size']}, median p50 per candidate"
    )
    for r in sel.results:
        mark = "*" if r.candidate == sel.chosen else " "
        if r.median_ms is None:
            print(f" {mark} {r.candidate.key:28s} not used: {r.error}")
            continue
        fid = f"  {common.fidelity_line(r.fidelity)}" if r.fidelity else ""
        print(
            f" {mark} {r.candidate.key:28s} p50 {r.median_ms:8.2f} ms "
            f"({r.vs_chosen:.2f}x the chosen){fid}"
        )
        if r.rejected:
            print(f"   {'':28s} not used: {r.rejected}")
    print(f"wrote {Path(args.bundle) / 'deploy.json'}: {sel.chosen.key} (fidelity vs FP32 above)")
    return 0
