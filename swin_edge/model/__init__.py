"""Swin Transformer model, named variants and checkpoint conversion."""

from .checkpoint import convert_state_dict, detect_format, load_checkpoint, load_into
from .config import PreprocessConfig, SwinConfig
from .swin import SwinTransformer
from .variants import VARIANTS, create_model, list_variants, variant_config

__all__ = [
    "VARIANTS",
    "PreprocessConfig",
    "SwinConfig",
    "SwinTransformer",
    "convert_state_dict",
    "create_model",
    "detect_format",
    "list_variants",
    "load_checkpoint",
    "load_into",
    "variant_config",
]
