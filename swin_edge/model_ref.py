"""``--model`` values: a built-in variant name or ``path/to/file.py:factory`` (no torch here, so
the command line can check them while parsing)."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SwinEdgeError


@dataclass(frozen=True)
class ModelRef:
    """``path/to/file.py:factory``."""

    path: Path
    factory: str

    def __str__(self) -> str:
        return f"{self.path}:{self.factory}"


def parse_model_ref(text: str) -> ModelRef | None:
    """A ``file.py:factory`` reference, or None for a built-in variant name."""
    path, sep, factory = text.rpartition(":")
    if sep and path.endswith(".py"):
        if not factory.isidentifier():
            raise SwinEdgeError(
                f"--model {text!r}: '{factory}' is not a function name; use path/to/file.py:factory"
            )
        return ModelRef(Path(path), factory)
    if text.endswith(".py"):
        raise SwinEdgeError(
            f"--model {text!r}: name the function that builds the model, e.g. {text}:create_model"
        )
    return None


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> keyword arguments; values are Python literals, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise SwinEdgeError(f"--model-arg {item!r}: use KEY=VALUE, e.g. depth=4 or act=gelu")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word: a string
        try:
            json.dumps(value)  # stored in the exported model's metadata
        except (TypeError, ValueError):
            raise SwinEdgeError(
                f"--model-arg {item!r}: use a number, string, bool, None, list or dict"
            ) from None
        out[key] = value
    return out
