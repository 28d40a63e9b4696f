"""``variants``: list the named model variants."""

from __future__ import annotations

import argparse

NAME = "variants"
HELP = "list the named model variants"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    from ..model import VARIANTS

    for name in sorted(VARIANTS):
        v = VARIANTS[name]
        print(
            f"{name:34s} embed {v['embed_dim']:3d} depths {v['depths']} "
            f"window {v['window_size']:2d} img {v['img_size']}"
        )
    return 0
