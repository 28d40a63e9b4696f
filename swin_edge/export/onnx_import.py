"""An FP32 ONNX made elsewhere as the start of ``build``/``deploy`` (``--onnx model.onnx``).

Its preprocessing comes from swin_edge metadata when it has some, else from the
``--mean/--std/--resize/--crop/--interpolation`` flags (an error names the missing ones); the
input size is the ONNX input's. The copy in the run folder carries that metadata, and nodes
named by module path when the exporter left its scope metadata (torch's dynamo exporter), so
``--keep-float`` and the per-layer report use module names as for our own exports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..errors import SwinEdgeError
from ..model.config import PreprocessFlags
from ..model.user import UserConfig, preprocess_from_config
from ..onnx_check import check_image_model, load_onnx
from ..utils import atomic_path
from .lint import SCOPES_KEY, lint_onnx
from .onnx_export import CONFIG_KEY, ExportResult, drop_sources, name_nodes_by_module

INPUT_NAME = "input"


@dataclass
class OnnxModel:
    """An existing FP32 ONNX and its :class:`~swin_edge.model.UserConfig` (``cfg``, as for
    models); ``batch`` is its static batch, None when symbolic."""

    path: Path
    cfg: UserConfig
    batch: int | None


def load_onnx_model(path: str | Path, flags: PreprocessFlags | None = None) -> OnnxModel:
    """Check an FP32 image-model ONNX and work out its config; nothing is written."""
    path = Path(path)
    proto = load_onnx(path)
    info = check_image_model(proto, path, allow_quantized=False)
    h, w = info.input_shape[2:]
    if h != w:
        raise SwinEdgeError(
            f"'{path}' takes {h}x{w} images; swin_edge feeds square center crops: export the "
            "model for a square input"
        )
    stored = next((json.loads(p.value) for p in proto.metadata_props if p.key == CONFIG_KEY), None)
    base = preprocess_from_config(stored) if stored else None
    what = f"'{path}'" + ("" if stored else " (no swin_edge metadata)")
    pp = (flags or PreprocessFlags()).apply(base, h, what)
    name = (stored or {}).get("name") or path.stem
    return OnnxModel(path, UserConfig(name, h, pp, source=str(path)), info.input_shape[0])


def _name_input(graph: onnx.GraphProto, name: str) -> None:
    """Rename the image input to ``name`` (as in our exports, which the TensorRT command lines
    name), unless that name is taken."""
    inits = {i.name for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    taken = inits | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    if inp.name == name or name in taken or any(o.name == inp.name for o in graph.output):
        return
    old, inp.name = inp.name, name
    for node in graph.node:
        node.input[:] = [name if i == old else i for i in node.input]


def import_onnx(model: OnnxModel, out: str | Path) -> ExportResult:
    """Write ``model`` to ``out`` atomically with its config as metadata (and nodes named by
    module path when it has torch's scope metadata); the lint report is returned, not
    enforced: the ONNX is the user's."""
    proto = onnx.load(str(model.path))
    _name_input(proto.graph, INPUT_NAME)
    if any(p.key == SCOPES_KEY for n in proto.graph.node for p in n.metadata_props):
        name_nodes_by_module(proto, keep_sources=True)
    report = lint_onnx(proto, allow_dynamic_batch=True)
    drop_sources(proto)
    props = [(p.key, p.value) for p in proto.metadata_props if p.key != CONFIG_KEY]
    props.append((CONFIG_KEY, json.dumps(model.cfg.to_dict())))
    del proto.metadata_props[:]
    for key, value in props:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return ExportResult(Path(out), report)


def to_onnx(model, path: str | Path, cfg=None, verify: bool = True) -> ExportResult:
    """The FP32 ONNX of any model source: :func:`~swin_edge.export.torch_to_onnx` for a
    PyTorch model (ours or a user's), :func:`import_onnx` for an :class:`OnnxModel` (``cfg``
    and ``verify`` do not apply: the ONNX is used as it is)."""
    if isinstance(model, OnnxModel):
        return import_onnx(model, path)
    from .onnx_export import torch_to_onnx

    return torch_to_onnx(model, path, cfg, verify=verify)
