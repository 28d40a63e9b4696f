"""ONNX export and the static-graph linter."""

from .lint import LintReport, lint_onnx
from .onnx_export import ExportConfig, ExportResult, read_model_config, torch_to_onnx

__all__ = [
    "ExportConfig",
    "ExportResult",
    "LintReport",
    "lint_onnx",
    "read_model_config",
    "torch_to_onnx",
]
