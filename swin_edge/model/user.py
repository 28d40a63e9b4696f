"""Your own model: ``--model path/to/file.py:factory`` for every command that takes ``--model``.

The factory is any callable returning an ``nn.Module`` (a fine-tuned Swin, another head, added
modules, a feature backbone with several outputs). It receives ``--img-size``, ``--window-size``,
``--num-classes``, ``--features-only`` and ``--checkpoint`` when its signature has parameters of
those names, plus every ``--model-arg KEY=VALUE``. A checkpoint the factory does not take is
loaded into the returned module strictly. The input size comes from the model (``img_size`` or
``input_size``, ``cfg.img_size``, timm's ``pretrained_cfg['input_size']``) or ``--img-size``;
preprocessing from the model (``cfg.preprocess`` as ours, timm's ``pretrained_cfg`` or
``default_cfg``) with ``--mean/--std/--resize/--crop/--interpolation`` laid over it, ImageNet
settings when only ``--img-size`` is known, and an error naming what is missing otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..errors import SwinEdgeError
from ..model_ref import ModelRef, parse_model_args, parse_model_ref
from .config import IMAGENET_CROP_PCT, INTERPOLATIONS, PreprocessConfig, PreprocessFlags

# Options a factory receives when its signature has a parameter of that name.
FACTORY_OPTIONS = {
    "img_size": "--img-size",
    "window_size": "--window-size",
    "num_classes": "--num-classes",
    "features_only": "--features-only",
    "checkpoint": "--checkpoint",
}


@dataclass(frozen=True)
class UserConfig:
    """What swin_edge needs to know about a model it did not build: the ``cfg`` of a
    :class:`UserModel` (and of an ONNX given with ``--onnx``), stored in the exported ONNX."""

    name: str
    img_size: int
    preprocess: PreprocessConfig
    in_chans: int = 3
    source: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UserModel:
    """A user's ``nn.Module`` and its :class:`UserConfig`. Exported as it is (its module names
    name the ONNX nodes, so ``--keep-float`` and the per-layer report use them)."""

    module: nn.Module
    cfg: UserConfig

    def eval(self) -> UserModel:
        self.module.eval()
        return self

    def __call__(self, x: Tensor) -> Any:
        return self.module(x)


def flatten_outputs(out: Any, what: str) -> tuple[list[Tensor], list[str]]:
    """A forward's result as a list of tensors and their ONNX output names: one tensor
    (``logits`` when 2-D, else ``output``), a list/tuple (``output0``...) or a dict (its keys)."""
    if isinstance(out, Tensor):
        tensors, names = [out], ["logits" if out.dim() == 2 else "output"]
    elif isinstance(out, (list, tuple)) and out and all(isinstance(t, Tensor) for t in out):
        tensors, names = list(out), [f"output{i}" for i in range(len(out))]
    elif isinstance(out, dict) and out and all(isinstance(t, Tensor) for t in out.values()):
        tensors, names = list(out.values()), [re.sub(r"[^\w.]", "_", str(k)) for k in out]
    else:
        raise SwinEdgeError(
            f"{what} returned {type(out).__name__}; return a tensor, a list/tuple of tensors or "
            "a dict of tensors"
        )
    bad = [
        f"{n} ({str(t.dtype).removeprefix('torch.')})"
        for t, n in zip(tensors, names, strict=True)
        if not t.is_floating_point()
    ]
    if bad:
        raise SwinEdgeError(
            f"{what} returns non-float output(s) {', '.join(bad)}; swin_edge quantizes and "
            "compares float outputs: return the logits or feature maps and take argmax/top-k "
            "after inference"
        )
    return tensors, names


def _where(e: BaseException, path: Path | None = None) -> str:
    """`` at file.py:42`` for the innermost traceback frame in ``path`` (or outside torch)."""
    from ..export.lint import is_library_file

    if isinstance(e, SyntaxError) and e.lineno:
        return f" at {e.filename}:{e.lineno}"
    frames = traceback.extract_tb(e.__traceback__)
    if path is not None:
        target = str(path.resolve())
        frames = [f for f in frames if str(Path(f.filename).resolve()) == target]
    else:
        frames = [f for f in frames if not is_library_file(f.filename)]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def describe_exception(e: BaseException, path: Path | None = None) -> str:
    """``TypeError: first line of the message at file.py:42`` (one line), for the original
    error of a chain (torch's exporter wraps the one the model's code raised)."""
    chain = [e]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
        chain.append(nxt)
    root = chain[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    msg = text.splitlines()[0][:200] if text else ""
    where = next((w for x in reversed(chain) if (w := _where(x, path))), "")
    return f"{type(root).__name__}{': ' + msg if msg else ''}{where}"


@contextlib.contextmanager
def _importable(path: Path) -> Iterator[None]:
    """The file's folder first on ``sys.path``: it may import its neighbours."""
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def load_factory(ref: ModelRef) -> Callable[..., Any]:
    """Import ``ref.path`` as a module (its folder importable) and return ``ref.factory``."""
    path = ref.path
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SwinEdgeError(f"--model '{ref}': '{path}' {what}; pass path/to/file.py:factory")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"swin_edge_user_{digest}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SwinEdgeError(f"--model '{ref}': '{path}' cannot be imported; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        with _importable(path):
            spec.loader.exec_module(module)
    except SwinEdgeError:
        raise
    except Exception as e:
        sys.modules.pop(name, None)
        raise SwinEdgeError(
            f"--model '{ref}': importing '{path}' failed ({describe_exception(e, path)}); fix "
            "the file"
        ) from None
    fn = getattr(module, ref.factory, None)
    if fn is None:
        defined = sorted(
            k
            for k, v in vars(module).items()
            if callable(v) and getattr(v, "__module__", None) == name and not k.startswith("_")
        )
        hint = f"it defines {', '.join(defined)}" if defined else "define a function there"
        raise SwinEdgeError(
            f"--model '{ref}': '{path}' has no '{ref.factory}'; {hint} (one returning the "
            "nn.Module)"
        )
    if not callable(fn):
        raise SwinEdgeError(
            f"--model '{ref}': '{ref.factory}' is a {type(fn).__name__}, not a function; name a "
            "function or class that returns the nn.Module"
        )
    return fn


def _accepts(fn: Callable[..., Any]) -> Callable[[str], bool]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass nothing extra
        return lambda name: False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return lambda name: True
    names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return lambda name: name in names


def _square(value: Any, what: str, ref: ModelRef) -> int | None:
    """An input size given as N, (H, W) or (C, H, W): N (square only), or None if not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) in (2, 3):
        if not all(isinstance(v, int) for v in value):
            return None
        h, w = value[-2:]
        if h != w:
            raise SwinEdgeError(
                f"--model '{ref}': its {what} is {tuple(value)}, not square; swin_edge feeds "
                "square center crops: build the model for a square input"
            )
        return h
    return None


def _cfg_dicts(module: nn.Module) -> list[tuple[str, dict]]:
    return [
        (attr, d)
        for attr in ("pretrained_cfg", "default_cfg")
        if isinstance(d := getattr(module, attr, None), dict)
    ]


def declared_input_size(module: nn.Module, ref: ModelRef) -> tuple[int | None, str]:
    """The input size a model declares, and where: ``img_size``/``input_size`` attributes,
    ``cfg.img_size`` or timm's ``pretrained_cfg['input_size']``."""
    cfg = getattr(module, "cfg", None)
    candidates = [(a, getattr(module, a, None)) for a in ("img_size", "input_size")]
    candidates.append(("cfg.img_size", getattr(cfg, "img_size", None)))
    candidates += [(f"{a}['input_size']", d.get("input_size")) for a, d in _cfg_dicts(module)]
    for what, value in candidates:
        size = _square(value, what, ref)
        if size is not None:
            return size, what
    return None, ""


def declared_preprocess(module: nn.Module, img_size: int) -> PreprocessConfig | None:
    """The preprocessing a model carries: ``cfg.preprocess`` (a :class:`PreprocessConfig`) or
    timm's ``pretrained_cfg``/``default_cfg`` (mean, std, crop_pct, interpolation)."""
    pp = getattr(getattr(module, "cfg", None), "preprocess", None)
    if isinstance(pp, PreprocessConfig):
        return replace(pp, img_size=img_size)
    for _, d in _cfg_dicts(module):
        if d.get("mean") is not None and d.get("std") is not None:
            interp = d.get("interpolation") or "bicubic"
            return PreprocessConfig(
                img_size=img_size,
                crop_pct=float(d.get("crop_pct") or IMAGENET_CROP_PCT),
                interpolation=interp if interp in INTERPOLATIONS else "bicubic",
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
            )
    return None


def load_user_checkpoint(module: nn.Module, checkpoint: str, ref: ModelRef) -> None:
    """Load a state dict into the user's module, strictly; a mismatch is one line."""
    from .checkpoint import _short, read_state_dict

    state = read_state_dict(checkpoint)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = [f"missing keys: {_short(missing)}"] if missing else []
        parts += [f"unexpected keys: {_short(unexpected)}"] if unexpected else []
        if shape:
            k = shape[0]
            parts.append(
                f"shape mismatch for {len(shape)} keys, e.g. {k}: checkpoint "
                f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            )
        raise SwinEdgeError(
            f"checkpoint '{checkpoint}' does not match the model from '{ref}': "
            + "; ".join(parts)
            + "; save that model's state_dict(), or give the factory a checkpoint parameter"
        )
    module.load_state_dict(state, strict=True)


def create_user_model(
    ref: ModelRef,
    checkpoint: str | None = None,
    features_only: bool = False,
    img_size: int | None = None,
    window_size: int | None = None,
    num_classes: int | None = None,
    model_args: dict[str, Any] | None = None,
    preprocess: PreprocessFlags | None = None,
) -> UserModel:
    """Build the model ``ref`` names, in eval mode, with its input size and preprocessing."""
    fn = load_factory(ref)
    accepts = _accepts(fn)
    kwargs = dict(model_args or {})
    for key in kwargs:
        if not accepts(key):
            raise SwinEdgeError(
                f"--model-arg {key}=...: {ref.factory}() takes no argument '{key}'; check "
                f"its parameters in '{ref.path}'"
            )
    given = {
        "img_size": img_size,
        "window_size": window_size,
        "num_classes": num_classes,
        "features_only": features_only or None,
        "checkpoint": checkpoint,
    }
    for key, value in given.items():
        if value is None:
            continue
        if accepts(key):
            kwargs.setdefault(key, value)
        elif key not in ("img_size", "checkpoint"):  # those two are checked/loaded here
            option = FACTORY_OPTIONS[key]
            raise SwinEdgeError(
                f"{option} given, but {ref.factory}() in '{ref.path}' takes no {key} "
                f"parameter; drop {option} or add the parameter to the factory"
            )
    try:
        with _importable(ref.path):
            module = fn(**kwargs)
    except SwinEdgeError:
        raise
    except Exception as e:
        raise SwinEdgeError(
            f"--model '{ref}': {ref.factory}() raised {describe_exception(e, ref.path)}; fix the "
            "factory or the options passed to it"
        ) from None
    if not isinstance(module, nn.Module):
        raise SwinEdgeError(
            f"--model '{ref}': {ref.factory}() returned {type(module).__name__}, not a "
            "torch.nn.Module; return the model itself"
        )
    if checkpoint is not None and "checkpoint" not in kwargs:
        load_user_checkpoint(module, checkpoint, ref)
    module.eval()
    declared, where = declared_input_size(module, ref)
    if img_size is not None and declared is not None and declared != img_size:
        fix = "" if accepts("img_size") else ", or give the factory an img_size parameter"
        raise SwinEdgeError(
            f"--model '{ref}' builds a model for {declared}x{declared} input (its {where}) but "
            f"--img-size is {img_size}; pass --img-size {declared}{fix}"
        )
    size = img_size or declared
    if size is None:
        raise SwinEdgeError(
            f"--model '{ref}': cannot tell the model's input size; give it an img_size (or "
            "input_size) attribute, or pass --img-size"
        )
    in_chans = getattr(module, "in_chans", None) or getattr(
        getattr(module, "cfg", None), "in_chans", 3
    )
    if in_chans != 3:
        raise SwinEdgeError(
            f"--model '{ref}' takes {in_chans} input channels; swin_edge feeds RGB images (3)"
        )
    base = declared_preprocess(module, size)
    if base is None and img_size is not None:  # only the size is known: ImageNet settings
        base = PreprocessConfig(img_size=size, crop_pct=IMAGENET_CROP_PCT)
    pp = (preprocess or PreprocessFlags()).apply(base, size, f"--model '{ref}'")
    name = f"{ref.path.stem}.{ref.factory}"
    cfg = UserConfig(name, size, pp, source=str(ref), kwargs=dict(model_args or {}))
    return UserModel(module, cfg)


def load_model(
    name: str,
    checkpoint: str | None = None,
    features_only: bool = False,
    img_size: int | None = None,
    window_size: int | None = None,
    num_classes: int | None = None,
    model_args: Sequence[str] = (),
    preprocess: PreprocessFlags | None = None,
) -> Any:
    """A built-in variant (:func:`~swin_edge.model.create_model`) or a user's model
    (``file.py:factory``, :func:`create_user_model`); preprocessing flags apply to both."""
    from .variants import create_model

    ref = parse_model_ref(name)
    flags = preprocess or PreprocessFlags()
    if ref is not None:
        return create_user_model(
            ref,
            checkpoint,
            features_only,
            img_size,
            window_size,
            num_classes,
            parse_model_args(model_args),
            flags,
        )
    if model_args:
        raise SwinEdgeError(
            f"--model-arg is for --model path/to/file.py:factory; the built-in '{name}' takes "
            "--img-size, --window-size and --num-classes"
        )
    model = create_model(
        name,
        checkpoint=checkpoint,
        features_only=features_only,
        img_size=img_size,
        window_size=window_size,
        num_classes=num_classes,
    )
    if flags.given():
        pp = flags.apply(model.cfg.preprocess, model.cfg.img_size, f"model '{name}'")
        model.cfg = replace(model.cfg, preprocess=pp)
    return model


def preprocess_from_config(d: dict[str, Any]) -> PreprocessConfig:
    """The preprocessing in a stored model config (a SwinConfig or :class:`UserConfig` dict)."""
    if isinstance(d.get("preprocess"), dict):
        return PreprocessConfig.from_dict(d["preprocess"])
    from .config import SwinConfig

    return SwinConfig.from_dict(d).preprocess
