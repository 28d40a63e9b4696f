"""``report``: re-render report.md/report.png from report.json (:mod:`swin_edge.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "report"
HELP = "render report.md and the chart from a report.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "json",
        type=common.input_file("run `python -m swin_edge build` first"),
        help="report.json written by build",
    )
    parser.add_argument("--out", type=common.output_dir, help="folder (default: beside the json)")


def check(args: argparse.Namespace) -> None:
    if args.out is None:  # written beside the json
        try:
            common.output_dir(str(Path(args.json).parent))
        except common.ArgError as e:
            raise common.ArgError(f"argument --out (default): {e}") from None


def run(args: argparse.Namespace) -> int:
    from ..report import load_report, write_report

    report = load_report(args.json)
    paths = write_report(report, Path(args.out or Path(args.json).parent))
    print(f"wrote {paths['md']} and {paths['png']}")
    return 0
