"""User-facing errors: one line, naming the file and the fix; the CLI maps them to exit code 2."""

from __future__ import annotations


class SwinEdgeError(Exception):
    """An error caused by bad input or environment, reported to the user without a traceback."""

    exit_code = 2


class MissingDependencyError(SwinEdgeError):
    """An optional dependency (TensorRT, pycuda, ...) is not installed."""
