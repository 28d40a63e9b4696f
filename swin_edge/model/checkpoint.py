"""Checkpoint loading: Microsoft official, timm and torchvision formats -> our (timm-like) keys."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import SwinEdgeError

StateDict = dict[str, Tensor]
_DROP = re.compile(r"(relative_position_index|attn_mask)$")


def read_state_dict(path: str | Path) -> StateDict:
    """Read a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file and unwrap common containers."""
    path = Path(path)
    if not path.is_file():
        raise SwinEdgeError(f"checkpoint '{path}' does not exist; pass a path to a .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise SwinEdgeError(
            f"checkpoint '{path}' could not be read ({type(e).__name__}: not a torch.save file "
            "of tensors); pass a state_dict saved with torch.save (or a .safetensors file)"
        ) from None
    for key in ("model", "state_dict", "model_ema", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SwinEdgeError(
            f"checkpoint '{path}' holds no state_dict of tensors; save model.state_dict()"
        )
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    check_finite(state, path)
    return state


def check_finite(state: StateDict, source: str | Path = "<state_dict>") -> None:
    """Refuse weights holding NaN or Inf, naming the first such tensor (in the file's order)."""
    bad = [
        k
        for k, v in state.items()
        if v.is_floating_point() or v.is_complex()
        if not bool(torch.isfinite(v).all())
    ]
    if bad:
        v = state[bad[0]]
        kind = "NaN" if bool(torch.isnan(v).any()) else "Inf"
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise SwinEdgeError(
            f"checkpoint '{source}' has {kind} in '{bad[0]}'{more}; the weights are corrupt or "
            "from a diverged run: pass a checkpoint with finite weights"
        )


def detect_format(state: StateDict) -> str:
    keys = state.keys()
    if any(k.startswith("features.0.0.") for k in keys):
        return "torchvision"
    if any(k.startswith("layers.0.downsample.") for k in keys) or "head.weight" in keys:
        return "microsoft"
    if any(k.startswith("layers.") for k in keys):
        return "timm"
    raise SwinEdgeError("checkpoint is not a Swin Transformer (no 'layers.*'/'features.*' keys)")


def from_microsoft(state: StateDict) -> StateDict:
    """Official Microsoft (and timm < 0.9): patch merging sits at the end of stage i."""
    out = {}
    for k, v in state.items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            k = f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"
        elif k.startswith("head."):
            k = "head.fc." + k[len("head.") :]
        out[k] = v
    return out


def from_torchvision(state: StateDict) -> StateDict:
    """torchvision ``features.N`` layout: 0=patch embed, odd=stages, even>0=patch merging."""
    out = {}
    for k, v in state.items():
        if k.startswith("features.0.0."):
            k = "patch_embed.proj." + k[len("features.0.0.") :]
        elif k.startswith("features.0.2."):
            k = "patch_embed.norm." + k[len("features.0.2.") :]
        elif m := re.match(r"features\.(\d+)\.(\d+)\.(.*)", k):
            n, j, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            k = f"layers.{(n - 1) // 2}.blocks.{j}.{rest}"
        elif m := re.match(r"features\.(\d+)\.(reduction|norm)\.(.*)", k):
            k = f"layers.{int(m.group(1)) // 2}.downsample.{m.group(2)}.{m.group(3)}"
        elif k.startswith("head."):
            k = "head.fc." + k[len("head.") :]
        out[k] = v
    return out


_CONVERTERS = {"microsoft": from_microsoft, "torchvision": from_torchvision, "timm": dict}


def convert_state_dict(state: StateDict, fmt: str | None = None) -> StateDict:
    """Remap any supported format to ours, dropping buffers we recompute (index, mask)."""
    fmt = fmt or detect_format(state)
    if fmt == "swin_edge":
        fmt = "timm"
    state = _CONVERTERS[fmt](state)
    return {k: v for k, v in state.items() if not _DROP.search(k)}


def load_checkpoint(path: str | Path) -> tuple[StateDict, str]:
    state = read_state_dict(path)
    try:
        fmt = detect_format(state)
    except SwinEdgeError as e:
        raise SwinEdgeError(
            f"checkpoint '{path}': {e}; expected Microsoft/timm/torchvision Swin"
        ) from None
    return convert_state_dict(state, fmt), fmt


def num_classes_of(state: StateDict) -> int | None:
    """Classifier size of a converted state dict; None without head weights."""
    w = state.get("head.fc.weight")
    return int(w.shape[0]) if w is not None else None


def is_headless(state: StateDict) -> bool:
    """A ``num_classes=0`` backbone (timm ``num_classes=0``): final norm, no classifier."""
    return "norm.weight" in state and not any(k.startswith("head.") for k in state)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_into(
    model: nn.Module, state: StateDict, source: str = "<state_dict>", fmt: str = ""
) -> None:
    """Strictly load a converted state dict; mismatches become one readable error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if getattr(model, "features_only", False):
        unexpected = [k for k in unexpected if not k.startswith(("norm.", "head."))]
    elif getattr(getattr(model, "cfg", None), "num_classes", None) == 0:  # classifier dropped
        unexpected = [k for k in unexpected if not k.startswith("head.")]
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if shape:
            k = shape[0]
            parts.append(
                f"shape mismatch for {len(shape)} keys, e.g. {k}: checkpoint "
                f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            )
        fix = "pick the --model variant (and --img-size/--window-size) it was trained with"
        if (
            missing
            and not unexpected
            and not shape
            and all(k.startswith(("norm.", "head.")) for k in missing)
        ):
            fix = "it is a feature backbone (no final norm/classifier): pass --features-only"
        raise SwinEdgeError(
            f"checkpoint '{source}' ({fmt or 'unknown'} format) does not match the model: "
            + "; ".join(parts)
            + f"; {fix}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
