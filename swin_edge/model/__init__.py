"""Swin Transformer model, named variants and checkpoint conversion."""

from .checkpoint import convert_state_dict, detect_format, load_checkpoint, load_into
from .config import PreprocessConfig, PreprocessFlags, SwinConfig
from .swin import SwinTransformer
from .user import UserConfig, UserModel, load_model, parse_model_ref
from .variants import VARIANTS, create_model, list_variants, variant_config

__all__ = [
    "VARIANTS",
    "PreprocessConfig",
    "PreprocessFlags",
    "SwinConfig",
    "SwinTransformer",
    "UserConfig",
    "UserModel",
    "convert_state_dict",
    "create_model",
    "detect_format",
    "list_variants",
    "load_model",
    "load_checkpoint",
    "load_into",
    "parse_model_ref",
    "variant_config",
]
