"""Generate reference fixtures from timm and torchvision (run once; NOT a runtime dependency).

timm and torchvision need a heavy torch build, so run this in a separate environment:

    python -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm numpy
    /tmp/fixvenv/bin/python scripts/make_reference_fixtures.py tests/fixtures

Writes, for small random configs, a state_dict in each upstream format plus an input batch and
the upstream model's logits (and timm's per-stage feature maps); and, for the full-size
variants, the upstream key -> shape lists so key remapping is tested on real architectures
without downloading weights.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import timm
import torch
import torchvision
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.swin_transformer import checkpoint_filter_fn
from torchvision.models.swin_transformer import SwinTransformer as TvSwin

SMALL = dict(embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4, num_classes=10)
IMG = 64


def randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if "relative_position_bias_table" in name else 0.15
            base = 1.0 if re.search(r"norm\d?\.weight$", name) else 0.0
            p.copy_(base + torch.randn(p.shape, generator=g) * scale)


def to_microsoft(state: dict[str, torch.Tensor], model: TimmSwin) -> dict[str, torch.Tensor]:
    """timm layout -> official Microsoft layout (downsample at stage end, ``head.weight``)."""
    out = {}
    for k, v in state.items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        k = k.replace("head.fc.", "head.")
        out[k] = v
    # Microsoft checkpoints also carry the buffers; we must ignore them.
    for name, buf in model.named_buffers():
        if name.endswith("relative_position_index"):
            out[name] = buf.clone()
    return out


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state.items()}


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))

    tm = TimmSwin(img_size=IMG, patch_size=4, **SMALL).eval()
    randomize(tm, 0)
    tsd = tm.state_dict()
    with torch.no_grad():
        tlogits = tm(x)
        tfeats = tm.forward_intermediates(x, intermediates_only=True)  # NCHW, every stage
    ms = to_microsoft(tsd, tm)
    # Prove the Microsoft layout is right: timm's own filter maps it back.
    tm2 = TimmSwin(img_size=IMG, patch_size=4, **SMALL).eval()
    tm2.load_state_dict(checkpoint_filter_fn({"model": ms}, tm2))
    with torch.no_grad():
        assert torch.equal(tm2(x), tlogits)

    tv = TvSwin(
        patch_size=[4, 4],
        embed_dim=SMALL["embed_dim"],
        depths=list(SMALL["depths"]),
        num_heads=list(SMALL["num_heads"]),
        window_size=[4, 4],
        num_classes=SMALL["num_classes"],
    ).eval()
    randomize(tv, 2)
    with torch.no_grad():
        tvlogits = tv(x)

    config = dict(SMALL, img_size=IMG, patch_size=4)
    torch.save(
        {
            "config": config,
            "input": x,
            "timm_state": tsd,
            "timm_logits": tlogits,
            "timm_features": tfeats,
            "microsoft_state": {"model": ms},
            "torchvision_state": tv.state_dict(),
            "torchvision_logits": tvlogits,
            "versions": {"timm": timm.__version__, "torchvision": torchvision.__version__},
        },
        out / "reference_small.pt",
    )

    full = {}
    for name in ("swin_tiny_patch4_window7_224", "swin_base_patch4_window12_384"):
        full[f"timm/{name}"] = shapes(timm.create_model(name, pretrained=False).state_dict())
    for name in ("swin_t", "swin_s", "swin_b"):
        full[f"torchvision/{name}"] = shapes(getattr(torchvision.models, name)().state_dict())
    (out / "upstream_keys.json").write_text(json.dumps(full, indent=0, sort_keys=True))
    print("wrote", out / "reference_small.pt", out / "upstream_keys.json")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
