"""PyTorch -> ONNX export with static spatial shapes, optional dynamic batch, and linting."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import SwinEdgeError
from ..model.swin import SwinTransformer, prepare_for_export
from ..model.user import UserModel, describe_exception, flatten_outputs
from ..utils import atomic_path
from .lint import CLASS_KEY, SCOPES_KEY, STACK_TRACE_KEY, LintReport, lint_onnx

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


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings, log lines or graph dumps from torch while it exports: a failure is then
    the one line we raise."""
    names = ["torch", "onnxscript"] + [
        n for n in logging.root.manager.loggerDict if n.startswith(("torch.", "onnxscript."))
    ]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _run_user_model(model: UserModel, x: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
    """The user's model on the example input (its outputs and their names), with a one-line
    error naming the user's source line when its forward fails."""
    what = f"--model '{model.cfg.source}'"
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise SwinEdgeError(
            f"{what} fails on a {tuple(x.shape)} input ({describe_exception(e)}); check "
            "--img-size against the size the model was built for"
        ) from None
    return flatten_outputs(out, what)


def torch_to_onnx(
    model: SwinTransformer | UserModel,
    path: str | Path,
    cfg: ExportConfig | None = None,
    verify: bool = True,
) -> ExportResult:
    """Export ``model`` (ours, or a user's :class:`~swin_edge.model.UserModel`) to ``path``
    atomically; raise if the graph is not static/parsable, naming the source line of each
    dynamic op."""
    cfg = cfg or ExportConfig()
    path = Path(path)
    model = model.eval()
    net = model.module if isinstance(model, UserModel) else model
    try:
        export_model = prepare_for_export(copy.deepcopy(net), cfg.dynamic_batch)
    except Exception as e:
        if not isinstance(model, UserModel):
            raise
        raise SwinEdgeError(
            f"--model '{model.cfg.source}' cannot be copied for export "
            f"({describe_exception(e)}); keep files, locks and sessions out of the module"
        ) from None
    size = model.cfg.img_size
    x = torch.randn(
        cfg.batch_size, model.cfg.in_chans, size, size, generator=torch.Generator().manual_seed(0)
    )
    if isinstance(model, UserModel):
        ref, names = _run_user_model(model, x)
    else:
        ref, names = None, _output_names(model)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},) if cfg.dynamic_batch else None
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                export_model,
                (x,),
                dynamo=True,
                opset_version=cfg.opset,
                input_names=["input"],
                output_names=names,
                dynamic_shapes=dynamic,
                optimize=True,
                external_data=False,
                verbose=False,
            )
        except Exception as e:
            if not isinstance(model, UserModel):
                raise
            raise SwinEdgeError(
                f"export of '{model.cfg.source}' failed in torch.onnx.export "
                f"({describe_exception(e)}); the forward must trace with static shapes: no "
                "Python branches on tensor values, sizes from the config"
            ) from None
    proto = fold_constants(program.model_proto)
    name_nodes_by_module(proto, keep_sources=True)  # the linter names source lines
    report = lint_onnx(proto, allow_dynamic_batch=cfg.dynamic_batch)
    drop_sources(proto)
    meta = proto.metadata_props.add()
    meta.key, meta.value = CONFIG_KEY, json.dumps(model.cfg.to_dict())
    onnx.checker.check_model(proto)
    if cfg.max_nodes is not None and report.num_nodes > cfg.max_nodes:
        report.errors.append(f"{report.num_nodes} nodes > limit {cfg.max_nodes}")
    if not report.ok:
        raise SwinEdgeError(f"export of '{model.cfg.name}' is not static: {report.summary()}")
    diff = None
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        if verify:
            diff = _max_abs_diff(model, tmp, x, ref)
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


def name_nodes_by_module(model: onnx.ModelProto, keep_sources: bool = False) -> None:
    """Name nodes ``<module path>/<Op>_<k>`` (e.g. ``layers.0.blocks.1.mlp.fc2/Gemm_0``) from the
    exporter's scope metadata, keeping the scope metadata; stack traces (they embed local paths)
    and class names go unless ``keep_sources`` (for the linter; see :func:`drop_sources`)."""
    kept = {"namespace", SCOPES_KEY} | ({STACK_TRACE_KEY, CLASS_KEY} if keep_sources else set())
    seen: dict[str, int] = {}
    for node in model.graph.node:
        scope = ""
        keep = []
        for p in node.metadata_props:
            if p.key == SCOPES_KEY:
                scopes = [s for s in json.loads(p.value.replace("'", '"')) if s]
                scope = scopes[-2] if len(scopes) > 1 else ""
            if p.key in kept:
                keep.append((p.key, p.value))
        del node.metadata_props[:]
        for key, value in keep:
            entry = node.metadata_props.add()
            entry.key, entry.value = key, value
        base = f"{scope or 'graph'}/{node.op_type}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        node.name = f"{base}_{k}"


def drop_sources(model: onnx.ModelProto) -> None:
    """Remove the exporter's stack traces (they embed local paths) and class names."""
    for node in model.graph.node:
        drop = (STACK_TRACE_KEY, CLASS_KEY)
        keep = [(p.key, p.value) for p in node.metadata_props if p.key not in drop]
        if len(keep) != len(node.metadata_props):
            del node.metadata_props[:]
            for key, value in keep:
                entry = node.metadata_props.add()
                entry.key, entry.value = key, value


def _max_abs_diff(
    model: SwinTransformer | UserModel,
    onnx_path: Path,
    x: torch.Tensor,
    refs: list[torch.Tensor] | None = None,
) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": x.numpy()})
    if refs is None:
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
