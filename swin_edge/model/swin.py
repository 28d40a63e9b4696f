"""Swin Transformer (v1) with static, export-friendly shifted-window attention.

Layout and weights follow timm's ``swin_transformer.py`` (patch merging at the start of each
stage after the first). Everything shape-dependent is computed once from the config: the
relative position index, shifted-window mask and token permutations are non-persistent buffers,
and reshapes use Python ints (the batch is the only ``-1``). The exported ONNX graph therefore
has no Shape/Mod/Pad/NonZero/ConstantOfShape ops.

Inside the network the token stream is kept 2-D, ``(B * H * W, C)``, so that every linear layer
exports as one ``Gemm`` (bias included), which ONNX Runtime and TensorRT fuse with Q/DQ into an
int8 GEMM with int32 bias. Within a stage the tokens are kept in window-major order: unshifted
blocks need no window partition at all, a shifted block's cyclic shift + partition (and the way
back) is one constant Gather, and patch merging gathers the 2x2 neighbourhoods straight into the
next stage's window order. Outputs (``forward_features``, feature maps) are row-major.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import SwinConfig

MASK_FILL = -100.0
"""Shifted-window mask value of the Microsoft/timm/torchvision models."""

EXPORT_MASK_FILL = -60.0
"""Mask value in exported graphs. After Softmax subtracts the row max, -100 lands below
float32's normal range (exp(-87.3)), so masked entries become denormals that slow Softmax and
the following MatMul several-fold on x86 (both FP32 and INT8). exp(-60) ~ 1e-26 is still far
below float32 resolution next to the row max (weight 1), so results are unchanged."""


def get_relative_position_index(win_h: int, win_w: int) -> Tensor:
    """Index into the relative position bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += win_h - 1
    rel[:, :, 1] += win_w - 1
    rel[:, :, 0] *= 2 * win_w - 1
    return rel.sum(-1)


def window_partition(x: Tensor, ws: int, h: int, w: int, c: int) -> Tensor:
    """(B, H, W, C) or (B * H * W, C) -> (B * nW * ws * ws, C), window-major."""
    x = x.reshape(-1, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, c)


def effective_window(resolution: int, window_size: int) -> int:
    """timm/Microsoft rule: a stage no larger than the window is one window (and never shifts)."""
    return resolution if resolution <= window_size else window_size


def window_order(res: int, ws: int) -> Tensor:
    """Raster index of every token of a (res, res) map in window-major order."""
    return window_partition(torch.arange(res * res).reshape(1, res, res, 1), ws, res, res, 1)[:, 0]


def stage_window_order(res: int, window_size: int) -> Tensor | None:
    """:func:`window_order` of a stage (its effective window), None where that is row-major
    already (a stage that is a single window)."""
    order = window_order(res, effective_window(res, window_size))
    return None if bool((order == torch.arange(res * res)).all()) else order


def shifted_window_order(res: int, ws: int, shift: int) -> Tensor:
    """For tokens in window-major order: where each token of the windows of the map rolled by
    ``-shift`` comes from. Gathering with it is roll + window partition in one step."""
    order = window_order(res, ws)
    rolled = torch.roll(torch.arange(res * res).reshape(res, res), (-shift, -shift), (0, 1))
    return torch.argsort(order)[rolled.reshape(-1)[order]]


def gather_tokens(x: Tensor, index: Tensor, c: int) -> Tensor:
    """Reorder the L tokens of every image of a (B * L, C) stream; ``index`` has L entries."""
    return x.reshape(-1, index.numel(), c).index_select(1, index).reshape(-1, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, fill: float = MASK_FILL) -> Tensor:
    """Attention mask (nW, N, N): ``fill`` between tokens from different pre-shift regions."""
    img_mask = torch.zeros(1, h, w, 1)
    cnt = 0
    spans = ((0, -ws), (-ws, -shift), (-shift, None))
    for hs in spans:
        for wsl in spans:
            img_mask[:, hs[0] : hs[1], wsl[0] : wsl[1], :] = cnt
            cnt += 1
    mw = window_partition(img_mask, ws, h, w, 1).reshape(-1, ws * ws)
    mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return mask.masked_fill(mask != 0, fill).masked_fill(mask == 0, 0.0)


class ErfGELU(nn.Module):
    """Exact (erf) GELU written as ``(x * 0.5) * (1 + erf(x / sqrt(2)))``.

    Same function as ``nn.GELU()``; this association is the one ONNX Runtime's GeluFusion
    recognises (the exporter's own decomposition is not), so export swaps it in.
    """

    def forward(self, x: Tensor) -> Tensor:
        return (x * 0.5) * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias.

    Input and output are 2-D, ``(B * nW * N, C)``. :meth:`fold_scale` moves the 1/sqrt(d)
    query scale into the qkv weights (done on a copy at export: one Mul fewer per block).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = window_size
        self.num_tokens = window_size * window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer(
            "relative_position_index",
            get_relative_position_index(window_size, window_size).view(-1),
            persistent=False,
        )
        self.scale_folded = False
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> Tensor:
        n = self.num_tokens
        bias = self.relative_position_bias_table[self.relative_position_index]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()  # (heads, N, N)

    @torch.no_grad()
    def fold_scale(self) -> None:
        if not self.scale_folded:
            self.qkv.weight[: self.dim] *= self.scale
            if self.qkv.bias is not None:
                self.qkv.bias[: self.dim] *= self.scale
            self.scale_folded = True

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        n, heads, hd = self.num_tokens, self.num_heads, self.head_dim
        # q, k, v split on channels; k^T comes from one (N, C) -> (C, N) transpose per window, which
        # ONNX Runtime runs far faster than a per-head (N, hd) -> (hd, N) transpose.
        q, k, v = self.qkv(x).reshape(-1, n, 3 * self.dim).split(self.dim, dim=-1)
        q = q.reshape(-1, n, heads, hd).transpose(1, 2)  # (B_, heads, N, hd)
        kt = k.transpose(1, 2).reshape(-1, heads, hd, n)  # (B_, heads, hd, N)
        v = v.reshape(-1, n, heads, hd).transpose(1, 2)
        if not self.scale_folded:
            q = q * self.scale
        attn = q @ kt
        bias = self.relative_position_bias()  # constant-folded at export
        if mask is None:
            attn = attn + bias.unsqueeze(0)
        else:  # one Add of the (nW, heads, N, N) bias+mask constant
            nw = mask.shape[0]
            bias = bias.unsqueeze(0) + mask.unsqueeze(1)
            attn = (attn.view(-1, nw, heads, n, n) + bias.unsqueeze(0)).view(-1, heads, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(-1, self.dim)
        return self.proj(x)


class SwinTransformerBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        resolution: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.resolution = resolution
        window_size = effective_window(resolution, window_size)
        if window_size == resolution:  # one window: nothing to shift
            shift_size = 0
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(resolution, resolution, window_size, shift_size)
        self.register_buffer("attn_mask", mask if shift_size else None, persistent=False)
        shift_in = shifted_window_order(resolution, window_size, shift_size) if shift_size else None
        self.register_buffer("shift_in", shift_in, persistent=False)
        shift_out = torch.argsort(shift_in) if shift_size else None
        self.register_buffer("shift_out", shift_out, persistent=False)

    def set_mask_fill(self, fill: float) -> None:
        """Use ``fill`` for cross-region pairs of the shifted-window mask."""
        if self.attn_mask is not None:
            r, ws, s = self.resolution, self.window_size, self.shift_size
            self.attn_mask = shifted_window_mask(r, r, ws, s, fill).to(self.attn_mask.device)

    def _attn(self, x: Tensor) -> Tensor:
        if not self.shift_size:  # tokens are already grouped by window
            return self.attn(x)
        x = gather_tokens(x, self.shift_in, self.dim)  # roll by -shift and partition
        x = self.attn(x, self.attn_mask)
        return gather_tokens(x, self.shift_out, self.dim)  # back, i.e. roll by +shift

    def forward(self, x: Tensor) -> Tensor:  # (B * H * W, C), tokens in window_order
        x = x + self._attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (Microsoft's x0,x1,x2,x3 order), LayerNorm, linear 4C -> 2C.

    Input tokens are in the window order of ``window_in`` at ``resolution``, output tokens in
    the window order of ``window_out`` at half the resolution: one constant gather.
    """

    def __init__(self, dim: int, resolution: int, window_in: int, window_out: int) -> None:
        super().__init__()
        self.dim = dim
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        r = resolution // 2
        pos_in = torch.argsort(window_order(resolution, window_in))  # raster -> stream position
        out = window_order(r, window_out)  # output raster positions in output stream order
        i, j = out // r, out % r
        corners = [(2 * i, 2 * j), (2 * i + 1, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j + 1)]
        index = torch.stack([pos_in[a * resolution + b] for a, b in corners], dim=1).reshape(-1)
        self.register_buffer("index", index, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = gather_tokens(x, self.index, self.dim).reshape(-1, 4 * self.dim)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Patchify conv and LayerNorm: (B, C, H, W) -> (B * H' * W', D) tokens, in raster order
    or, with ``token_order`` (L indices), in that order (the first stage's window order).

    The reorder comes before the norm (same values: the norm is per token). After it,
    OpenVINO 2026.4 miscomputes the int8 model of a dynamic-batch export: a per-channel
    multiply (the norm's weight) ahead of Reshape(-1, ...) and a gather, then a LayerNorm and a
    quantizer, loses ~20 dB (``scripts/openvino_dynamic_batch_repro.py``).
    """

    def __init__(
        self, patch_size: int, in_chans: int, embed_dim: int, token_order: Tensor | None = None
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)
        self.register_buffer("token_order", token_order, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        x = x.permute(0, 2, 3, 1).reshape(-1, self.proj.out_channels)
        if self.token_order is not None:
            x = gather_tokens(x, self.token_order, self.proj.out_channels)
        return self.norm(x)


class SwinStage(nn.Module):
    """Blocks at one resolution. Tokens flow in this stage's window order (window_order), so
    unshifted blocks need no partition at all; ``to_raster`` restores row-major order. Stage 0
    takes raster tokens, or tokens already in its window order with ``window_ordered_input``
    (:class:`PatchEmbed` with ``token_order``, as :class:`SwinTransformer` builds it)."""

    def __init__(self, cfg: SwinConfig, index: int, window_ordered_input: bool = False) -> None:
        super().__init__()
        res, dim = cfg.stage_resolutions()[index], cfg.stage_dims()[index]
        self.dim = dim
        ws = effective_window(res, cfg.window_size)
        if index > 0:
            prev = cfg.stage_resolutions()[index - 1]
            ws_prev = effective_window(prev, cfg.window_size)
            self.downsample = PatchMerging(dim // 2, prev, ws_prev, ws)
        else:
            self.downsample = nn.Identity()
        order = stage_window_order(res, cfg.window_size)
        # stage 0 receives raster tokens from the patch embedding, unless told otherwise
        to_window = order if index == 0 and not window_ordered_input else None
        self.register_buffer("to_window", to_window, persistent=False)
        from_window = None if order is None else torch.argsort(order)
        self.register_buffer("from_window", from_window, persistent=False)
        self.blocks = nn.Sequential(
            *[
                SwinTransformerBlock(
                    dim,
                    res,
                    cfg.num_heads[index],
                    cfg.window_size,
                    0 if i % 2 == 0 else cfg.window_size // 2,
                    cfg.mlp_ratio,
                    cfg.qkv_bias,
                )
                for i in range(cfg.depths[index])
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.to_window is not None:
            x = gather_tokens(x, self.to_window, self.dim)
        return self.blocks(self.downsample(x))

    def to_raster(self, x: Tensor) -> Tensor:
        """This stage's output tokens in row-major (raster) order."""
        if self.from_window is None:
            return x
        return gather_tokens(x, self.from_window, self.dim)


class ClassifierHead(nn.Module):
    """Global average pool over the tokens, then a linear classifier (timm's layout);
    ``num_classes=0`` leaves the classifier out: the output is the pooled features (B, C)."""

    def __init__(self, dim: int, num_classes: int, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.dim = dim
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:  # (B * L, C) or (B, L, C)
        if x.dim() == 2:
            x = x.reshape(-1, self.num_tokens, self.dim)
        return self.fc(x.mean(dim=1))


class SwinTransformer(nn.Module):
    """Swin Transformer v1 classifier, or a 4-stage feature extractor with ``features_only``."""

    def __init__(self, cfg: SwinConfig | None = None, features_only: bool = False) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SwinConfig()
        self.features_only = features_only
        order = stage_window_order(cfg.stage_resolutions()[0], cfg.window_size)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim, order)
        self.layers = nn.Sequential(
            *[SwinStage(cfg, i, window_ordered_input=True) for i in range(cfg.num_stages)]
        )
        self.num_features = cfg.stage_dims()[-1]
        self.feature_channels = cfg.stage_dims()
        # Classifier graph only (same values): norm the tokens as (B, L, C) rather than
        # (B * L, C), so no Reshape(-1, ...) sits between the norm and the pooling. OpenVINO
        # 2026.4 miscomputes that Reshape in int8 with a dynamic batch, and the 3-D form in the
        # int8 model NNCF's own recipe makes of a static export (10.9 vs 31.4 dB on Swin-T), so
        # :func:`prepare_for_export` sets it for dynamic-batch exports only.
        self.norm_tokens_3d = False
        if not features_only:
            self.norm = nn.LayerNorm(self.num_features)
            last = cfg.stage_resolutions()[-1]
            self.head = ClassifierHead(self.num_features, cfg.num_classes, last * last)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _last_tokens(self, x: Tensor) -> Tensor:
        """The last stage's tokens, (B * L, C), row-major, before the final norm."""
        return self.layers[-1].to_raster(self.layers(self.patch_embed(x)))

    def forward_features(self, x: Tensor) -> Tensor:
        """Final normed tokens, (B * L, C), row-major."""
        return self.norm(self._last_tokens(x))

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The output of every stage, NCHW, as a detection/segmentation backbone expects."""
        x = self.patch_embed(x)
        feats = []
        for stage, res, dim in zip(
            self.layers, self.cfg.stage_resolutions(), self.feature_channels, strict=True
        ):
            x = stage(x)
            feats.append(stage.to_raster(x).reshape(-1, res, res, dim).permute(0, 3, 1, 2))
        return feats

    def prepare_for_export(self) -> SwinTransformer:
        """In place: see :func:`prepare_for_export`."""
        prepare_for_export(self)
        return self

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        if not self.norm_tokens_3d:
            return self.head(self.forward_features(x))
        tokens = self._last_tokens(x).reshape(-1, self.head.num_tokens, self.num_features)
        return self.head(self.norm(tokens))  # the same values, another graph


def prepare_for_export(model: nn.Module, dynamic_batch: bool = False) -> nn.Module:
    """In place, on any network (ours, or a user's built with or around these blocks): fold
    query scales into qkv weights, use the denormal-free mask value (:data:`EXPORT_MASK_FILL`),
    write every exact ``nn.GELU`` in the form ONNX Runtime fuses (same function) and pick the
    classifier's norm layout for the batch (``SwinTransformer.norm_tokens_3d``)."""
    for m in list(model.modules()):
        if isinstance(m, SwinTransformer):
            m.norm_tokens_3d = dynamic_batch
        if isinstance(m, WindowAttention):
            m.fold_scale()
        if isinstance(m, SwinTransformerBlock):
            m.set_mask_fill(EXPORT_MASK_FILL)
        for name, child in list(m.named_children()):
            if type(child) is nn.GELU and child.approximate == "none":
                setattr(m, name, ErfGELU())
    return model


__all__ = [
    "effective_window",
    "gather_tokens",
    "shifted_window_order",
    "stage_window_order",
    "window_order",
    "EXPORT_MASK_FILL",
    "MASK_FILL",
    "PatchMerging",
    "SwinTransformer",
    "SwinTransformerBlock",
    "WindowAttention",
    "get_relative_position_index",
    "prepare_for_export",
    "shifted_window_mask",
    "window_partition",
]
