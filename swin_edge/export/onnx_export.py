"""PyTorch -> ONNX export with static spatial shapes, optional dynamic batch, and linting."""

from __future__ import annotations

import copy
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import SwinEdgeError
from ..model.swin import SwinTransformer
from ..utils import atomic_path
from .lint import LintReport, lint_onnx

CONFIG_KEY = "swin_edge.config"


@dataclass(frozen=True)
class ExportConfig:
    """How to export: opset (18..onnx's newest), example batch size, dynamic batch axis."""

    opset: int = 18
    batch_size: int = 1
    dynamic_batch: bool = False
    max_nodes: int | None = None

    def __post_init__(self) -> None:
        if self.opset < 18:
            raise SwinEdgeError(f"--opset {self.opset}: the exporter needs opset >= 18")
        if self.opset > (newest := onnx.defs.onnx_opset_version()):  # torch would write 18
            raise SwinEdgeError(
                f"--opset {self.opset}: the installed onnx converts to opset {newest} at most"
            )
        if self.batch_size < 1:
            raise SwinEdgeError(f"--batch {self.batch_size}: batch size must be >= 1")


@dataclass
class ExportResult:
    path: Path
    lint: LintReport
    max_abs_diff: float | None = None


def _output_names(model: SwinTransformer) -> list[str]:
    if model.features_only:
        return [f"stage{i + 1}" for i in range(model.cfg.num_stages)]
    return ["features"] if model.cfg.num_classes == 0 else ["logits"]


def torch_to_onnx(
    model: SwinTransformer,
    path: str | Path,
    cfg: ExportConfig | None = None,
    verify: bool = True,
) -> ExportResult:
    """Export ``model`` to ``path`` atomically; raise if the graph is not static/parsable."""
    cfg = cfg or ExportConfig()
    path = Path(path)
    model = model.eval()
    export_model = copy.deepcopy(model).prepare_for_export()
    size = model.cfg.img_size
    x = torch.randn(
        cfg.batch_size, model.cfg.in_chans, size, size, generator=torch.Generator().manual_seed(0)
    )
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if cfg.dynamic_batch else None
    for name in ("torch.onnx", "torch.export", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            export_model,
            (x,),
            dynamo=True,
            opset_version=cfg.opset,
            input_names=["input"],
            output_names=_output_names(model),
            dynamic_shapes=dynamic,
            optimize=True,
            external_data=False,
            verbose=False,
        )
    proto = fold_constants(program.model_proto)
    name_nodes_by_module(proto)
    meta = proto.metadata_props.add()
    meta.key, meta.value = CONFIG_KEY, json.dumps(model.cfg.to_dict())
    onnx.checker.check_model(proto)
    report = lint_onnx(proto, allow_dynamic_batch=cfg.dynamic_batch)
    if cfg.max_nodes is not None and report.num_nodes > cfg.max_nodes:
        report.errors.append(f"{report.num_nodes} nodes > limit {cfg.max_nodes}")
    if not report.ok:
        raise SwinEdgeError(f"export of '{model.cfg.name}' is not static: {report.summary()}")
    diff = None
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if verify:
            diff = _max_abs_diff(model, tmp, x)
            if not np.isfinite(diff):  # raising here leaves nothing written
                raise SwinEdgeError(
                    f"export of '{model.cfg.name}' to '{path}': the outputs are not finite "
                    f"(max diff vs PyTorch {diff}); check the checkpoint's weights"
                )
    return ExportResult(path, report, diff)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every constant subgraph, however large: the exporter skips outputs over 256K
    elements, which leaves stage 1's relative-bias + shift-mask sum (nW*heads*N*N) computed
    at run time."""
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model, input_size_limit=1 << 24, output_size_limit=1 << 26)


def name_nodes_by_module(model: onnx.ModelProto) -> None:
    """Name nodes ``<module path>/<Op>_<k>`` (e.g. ``layers.0.blocks.1.mlp.fc2/Gemm_0``) from the
    exporter's scope metadata, and drop stack traces (they embed local paths)."""
    seen: dict[str, int] = {}
    for node in model.graph.node:
        scope = ""
        keep = []
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                scopes = [s for s in json.loads(p.value.replace("'", '"')) if s]
                scope = scopes[-2] if len(scopes) > 1 else ""
            if p.key in ("namespace", "pkg.torch.onnx.name_scopes"):
                keep.append((p.key, p.value))
        del node.metadata_props[:]
        for key, value in keep:
            entry = node.metadata_props.add()
            entry.key, entry.value = key, value
        base = f"{scope or 'graph'}/{node.op_type}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        node.name = f"{base}_{k}"


def _max_abs_diff(model: SwinTransformer, onnx_path: Path, x: torch.Tensor) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    refs = ref if isinstance(ref, list) else [ref]
    return float(max(np.abs(o - r.numpy()).max() for o, r in zip(outs, refs, strict=True)))


def read_model_config(onnx_path: str | Path) -> dict | None:
    """The SwinConfig dict stored in an exported model's metadata, if any."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == CONFIG_KEY:
            return json.loads(p.value)
    return None
