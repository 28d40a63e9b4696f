"""Command line: ``python -m swin_edge <command>``, one module per command in :mod:`.commands`.

Every failure caused by input or environment is one line on stderr and exit code 2, never a
traceback: parse errors (including each command's validators and ``check``), library errors
(:class:`~swin_edge.errors.SwinEdgeError`) and OS errors (permissions, disk full, ...).
Ctrl-C and SIGTERM exit 130 after temporary files are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, NoReturn

from .commands import (
    bench,
    build,
    compare,
    deploy,
    engine,
    export,
    lint,
    quantize,
    report,
    select_runtime,
    serve_bench,
    variants,
)
from .errors import SwinEdgeError

PROG = "python -m swin_edge"
# The order of `python -m swin_edge --help`.
COMMANDS: tuple[ModuleType, ...] = (
    build,
    export,
    lint,
    quantize,
    compare,
    bench,
    serve_bench,
    report,
    deploy,
    select_runtime,
    engine,
    variants,
)
DESCRIPTION = (
    "Swin Transformer from PyTorch to fast, accurate INT8 on edge hardware.\n\ncommands:\n"
    + "".join(f"  {m.NAME:15s} {m.HELP}\n" for m in COMMANDS)
)


def _one_line(text: str) -> str:
    return " ".join(text.split("\n"))


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse prints the usage first) and which
    runs its command's cross-argument ``check`` as part of parsing."""

    check: Callable[[argparse.Namespace], None] | None = None

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        if self.check is not None:
            try:
                self.check(ns)
            except (argparse.ArgumentTypeError, SwinEdgeError) as e:
                self.error(str(e))
        return ns, extras


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        usage=f"{PROG} [-h] command [options]",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # the ordered command list lives in DESCRIPTION; argparse would list them a second time
    sub = parser.add_subparsers(
        dest="command", metavar="command", required=True, help=argparse.SUPPRESS, prog=PROG
    )
    for mod in COMMANDS:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", None))
        mod.add_arguments(p)
        p.check = getattr(mod, "check", None)
        p.set_defaults(func=mod.run)
    return parser


_OS_FIXES = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "free disk space or choose another path",
    errno.EDQUOT: "free disk space (quota) or choose another path",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.ENOTDIR: "a file is in the way of a folder in this path; choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def os_error_line(e: OSError) -> str:
    """One line naming the file of an OS error and what to do about it."""
    name = e.filename2 if e.filename2 is not None else e.filename  # rename: the target
    what = f"'{name}': " if name is not None else ""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{what}{reason}; {_OS_FIXES.get(e.errno, 'check the path and try again')}"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, CI timeouts, docker stop) unwinds like Ctrl-C, so temporary files and
    staging folders are removed; a second SIGTERM does not interrupt that clean-up."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    # SIG_IGN: the parent asked for SIGTERM to be ignored; None: a handler not set from Python
    install = previous not in (signal.SIG_IGN, None)
    if install:
        try:
            signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: signals stay as they are
            install = False
    try:
        yield
    finally:
        if install:
            signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    with _sigterm_as_interrupt():
        where = PROG
        try:
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:  # a parse error was printed in one line; --help exits 0
                if e.code == 2:
                    return 2
                raise
            where = f"{PROG} {args.command}"
            return int(args.func(args) or 0)
        except SwinEdgeError as e:
            print(f"{where}: error: {_one_line(str(e))}", file=sys.stderr)
            return e.exit_code
        except OSError as e:
            print(f"{where}: error: {os_error_line(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{where}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
