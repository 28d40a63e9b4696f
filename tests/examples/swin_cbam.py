"""A user's model for swin_edge: Swin with a CBAM-style convolutional attention block (channel
then spatial attention, Woo et al. 2018) after every stage.

Written as a user would, on top of ``swin_edge.model``; swin_edge loads it with
``--model tests/examples/swin_cbam.py:digits_cbam`` (or ``:cbam_backbone``). The weights in
``tests/fixtures/digits_cbam.pth`` come from ``scripts/train_digits_cbam.py``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from swin_edge.digits import DIGITS_CONFIG
from swin_edge.model import SwinConfig, SwinTransformer
from swin_edge.model.swin import effective_window, gather_tokens, window_order


class ChannelAttention(nn.Module):
    """Shared 1x1-conv MLP on the average- and max-pooled map, sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        peak = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        return x * torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """7x7 conv on the channel mean and max, sigmoid gate per position."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class StageCBAM(nn.Module):
    """CBAM on a stage's token stream: tokens (window order) -> NCHW map -> attention."""

    def __init__(self, dim: int, resolution: int, window: int) -> None:
        super().__init__()
        self.dim, self.resolution = dim, resolution
        self.channel = ChannelAttention(dim)
        self.spatial = SpatialAttention()
        order = window_order(resolution, effective_window(resolution, window))
        identity = bool((order == torch.arange(resolution * resolution)).all())
        # sizes and token orders are fixed at construction: the export stays static
        self.register_buffer("to_window", None if identity else order, persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # raster tokens (B * H * W, C) -> NCHW
        r = self.resolution
        x = x.reshape(-1, r, r, self.dim).permute(0, 3, 1, 2)
        return self.spatial(self.channel(x))

    def tokens(self, x: Tensor) -> Tensor:  # NCHW -> tokens in this stage's window order
        x = x.permute(0, 2, 3, 1).reshape(-1, self.dim)
        return x if self.to_window is None else gather_tokens(x, self.to_window, self.dim)


class SwinCBAM(SwinTransformer):
    """Swin with CBAM after every stage; ``features_only`` returns the attended stage maps."""

    def __init__(self, cfg: SwinConfig, features_only: bool = False) -> None:
        super().__init__(cfg, features_only)
        self.cbam = nn.ModuleList(
            StageCBAM(dim, res, cfg.window_size)
            for dim, res in zip(cfg.stage_dims(), cfg.stage_resolutions(), strict=True)
        )

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        x = self.patch_embed(x)
        maps = []
        for i, (stage, cbam) in enumerate(zip(self.layers, self.cbam, strict=True)):
            x = stage(x)
            maps.append(cbam(stage.to_raster(x)))
            if i + 1 < len(self.layers):
                x = cbam.tokens(maps[-1])
        return maps

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        maps = self.forward_intermediates(x)
        if self.features_only:
            return maps
        tokens = maps[-1].permute(0, 2, 3, 1).reshape(-1, self.num_features)
        return self.head(self.norm(tokens))


DIGITS_CBAM_CONFIG = replace(DIGITS_CONFIG, name="swin_cbam_digits")
BACKBONE_CONFIG = SwinConfig(
    img_size=64,
    patch_size=2,
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 4, 8),
    window_size=4,
    num_classes=0,
    name="swin_cbam_backbone",
)


def digits_cbam(features_only: bool = False) -> SwinCBAM:
    """The digits classifier with CBAM (``--checkpoint tests/fixtures/digits_cbam.pth``)."""
    return SwinCBAM(DIGITS_CBAM_CONFIG, features_only)


def cbam_backbone(seed: int = 0) -> SwinCBAM:
    """A 4-stage detection-style backbone: four attended feature maps (random weights)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SwinCBAM(BACKBONE_CONFIG, features_only=True)
