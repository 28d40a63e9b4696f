"""swin_edge: Swin Transformer from PyTorch to fast, accurate INT8 on edge hardware."""

__version__ = "0.1.0"
