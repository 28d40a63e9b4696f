"""``report``: re-render report.md/report.png from report.json (:mod:`swin_edge.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import common

NAME = "report"
HELP = "render report.md and the chart from a report.json"


def report_json(text: str) -> str:
    """``type=`` for a report.json, or a run folder holding one."""
    hint = "pass a build run folder or its report.json (run `python -m swin_edge build` first)"
    if text.strip() and Path(text).is_dir():
        text = str(Path(text) / "report.json")
    return common.input_file(hint)(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "json", type=report_json, help="report.json written by build, or its run folder"
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
