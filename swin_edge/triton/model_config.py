"""``config.pbtxt``: render Triton model configurations and validate them.

A config is built as a plain dict (:func:`render_pbtxt` writes it in protobuf text format, in
the field order given), then parsed into Triton's own ``ModelConfig`` protobuf
(``tritonclient.grpc.model_config_pb2``, :func:`parse_config`: unknown fields, bad enums and
syntax errors are refused) and checked for what the protobuf cannot express
(:func:`check_config`: batch rules, dims, instance kinds, and the exact I/O of the ONNX the model
is made from). Nothing is written before both pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError
from ..utils import lazy_import

INSTALL_HINT = "install the Triton extra: pip install 'swin_edge[triton]'"
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# ONNX TensorProto element type -> Triton data type
ONNX_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}
# platform / backend -> the instance kinds it runs on
KINDS = {
    "tensorrt_plan": ("KIND_GPU",),
    "onnxruntime_onnx": ("KIND_CPU", "KIND_GPU"),
    "openvino": ("KIND_CPU",),
    "python": ("KIND_CPU", "KIND_GPU", "KIND_MODEL"),
    "ensemble": (),
}


class Enum(str):
    """A protobuf enum value: written without quotes."""


class Map(dict):
    """A protobuf map field: written as repeated ``{ key: ... value: ... }`` entries."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, Triton data type, and full dims (-1 for a symbolic dim)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelIO:
    """The inputs and outputs of an ONNX model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batch(self) -> int | None:
        """The static batch shared by every tensor's first dim, or None for a dynamic batch."""
        firsts = {t.dims[0] for t in (*self.inputs, *self.outputs) if t.dims}
        return None if -1 in firsts or len(firsts) != 1 else firsts.pop()


def onnx_io(path: str | Path) -> ModelIO:
    """Names, Triton dtypes and dims of an ONNX model's graph inputs and outputs."""
    import onnx

    from ..onnx_check import load_onnx

    model = load_onnx(path)
    inits = {i.name for i in model.graph.initializer}

    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        t = v.type.tensor_type
        dtype = ONNX_TO_TRITON.get(t.elem_type)
        if dtype is None or not t.HasField("shape"):
            raise SwinEdgeError(
                f"'{path}': tensor '{v.name}' has no Triton data type or no shape; export the "
                "model with `python -m swin_edge export`"
            )
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return TensorSpec(v.name, dtype, dims)

    inputs = tuple(spec(i) for i in model.graph.input if i.name not in inits)
    return ModelIO(inputs, tuple(spec(o) for o in model.graph.output))


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if not text.isascii():
        raise SwinEdgeError(f"config value {text!r} is not ASCII; use ASCII names and values")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_pbtxt(fields: Mapping[str, Any], indent: int = 0) -> str:
    """Protobuf text format of ``fields``: dicts are messages, :class:`Map` map fields, lists of
    dicts repeated messages, lists of scalars ``[a, b]``, :class:`Enum` unquoted values."""
    pad = "  " * indent
    lines = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Map):
            for k, v in value.items():
                entry = {"key": k, "value": v}
                lines.append(f"{pad}{key} {{\n{render_pbtxt(entry, indent + 1)}{pad}}}")
        elif isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{\n{render_pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, list | tuple) and value and isinstance(value[0], Mapping):
            items = [f"{pad}  {{\n{render_pbtxt(v, indent + 2)}{pad}  }}" for v in value]
            lines.append(f"{pad}{key} [\n" + ",\n".join(items) + f"\n{pad}]")
        elif isinstance(value, list | tuple):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def model_config_pb2() -> Any:
    """Triton's ``model_config_pb2`` (from tritonclient[grpc])."""
    return lazy_import("tritonclient.grpc.model_config_pb2", INSTALL_HINT)


def parse_config(text: str, where: str | Path = "config.pbtxt") -> Any:
    """Parse ``text`` into Triton's ``ModelConfig``; a syntax error, an unknown field or enum
    value is a one-line :class:`SwinEdgeError` naming ``where``."""
    pb2 = model_config_pb2()
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise SwinEdgeError(
            f"'{where}' is not a valid Triton model config ({e}); fix the field it names"
        ) from None


def _dims(cfg: Any, spec: TensorSpec) -> tuple[int, ...]:
    """``spec``'s dims as the config must state them: without the batch dim when batching."""
    return spec.dims[1:] if cfg.max_batch_size > 0 else spec.dims


def check_config(
    cfg: Any,
    where: str | Path = "config.pbtxt",
    io: ModelIO | None = None,
    name: str | None = None,
) -> None:
    """Raise a one-line :class:`SwinEdgeError` for what Triton would refuse at load time (or
    serve wrongly): a name that is not the folder's, batch settings that contradict
    ``max_batch_size``, dims that are empty or below -1, instance kinds the backend cannot run,
    and with ``io`` any input/output whose name, type or dims differ from the ONNX's."""
    pb2 = model_config_pb2()
    bad = f"'{where}'"
    if not NAME_RE.fullmatch(cfg.name) or (name is not None and cfg.name != name):
        raise SwinEdgeError(f"{bad}: model name {cfg.name!r} must be its folder name {name!r}")
    engine = cfg.platform or cfg.backend
    if engine not in KINDS:
        raise SwinEdgeError(f"{bad}: platform/backend {engine!r} is not one of {', '.join(KINDS)}")
    mbs = cfg.max_batch_size
    if mbs < 0:
        raise SwinEdgeError(f"{bad}: max_batch_size {mbs} must be >= 0 (0: no batching)")
    if cfg.HasField("dynamic_batching"):
        db = cfg.dynamic_batching
        if mbs == 0:
            raise SwinEdgeError(
                f"{bad}: dynamic_batching needs max_batch_size > 0 (the model has a static batch)"
            )
        for b in db.preferred_batch_size:
            if not 1 <= b <= mbs:
                raise SwinEdgeError(
                    f"{bad}: preferred_batch_size {b} is outside 1..max_batch_size {mbs}"
                )
    for what, tensors in (("input", cfg.input), ("output", cfg.output)):
        if not tensors:
            raise SwinEdgeError(f"{bad}: no {what}s; state every {what} of the model")
        names = [t.name for t in tensors]
        if len(set(names)) != len(names):
            raise SwinEdgeError(f"{bad}: duplicate {what} names {names}")
        for t in tensors:
            if t.data_type == pb2.TYPE_INVALID:
                raise SwinEdgeError(f"{bad}: {what} '{t.name}' has no data_type")
            if not t.dims or any(d < -1 or d == 0 for d in t.dims):
                raise SwinEdgeError(
                    f"{bad}: {what} '{t.name}' dims {list(t.dims)} must be non-empty, each > 0 "
                    "or -1"
                )
    if engine == "ensemble":
        if not cfg.ensemble_scheduling.step:
            raise SwinEdgeError(f"{bad}: an ensemble needs ensemble_scheduling steps")
    else:
        for group in cfg.instance_group:
            kind = pb2.ModelInstanceGroup.Kind.Name(group.kind)
            if kind not in KINDS[engine]:
                raise SwinEdgeError(
                    f"{bad}: instance_group kind {kind} cannot run {engine}; use "
                    f"{' or '.join(KINDS[engine])}"
                )
            if group.count < 1:
                raise SwinEdgeError(f"{bad}: instance_group count {group.count} must be >= 1")
    if io is not None:
        _check_io(cfg, bad, io)


def _check_io(cfg: Any, bad: str, io: ModelIO) -> None:
    pb2 = model_config_pb2()
    if cfg.max_batch_size > 0 and io.batch is not None and cfg.backend != "python":
        raise SwinEdgeError(
            f"{bad}: max_batch_size {cfg.max_batch_size} but the ONNX has a static batch of "
            f"{io.batch}; use max_batch_size 0 or export with --dynamic-batch"
        )
    for what, stated, actual in (
        ("input", cfg.input, io.inputs),
        ("output", cfg.output, io.outputs),
    ):
        want = {t.name: t for t in actual}
        got = {t.name: t for t in stated}
        if set(want) != set(got):
            raise SwinEdgeError(f"{bad}: {what}s {sorted(got)} are not the model's {sorted(want)}")
        for n, spec in want.items():
            dtype = pb2.DataType.Name(got[n].data_type)
            if dtype != spec.data_type:
                raise SwinEdgeError(
                    f"{bad}: {what} '{n}' is {dtype} but the model's is {spec.data_type}"
                )
            dims = _dims(cfg, spec)
            if cfg.backend == "python" and io.batch is not None:  # the runner feeds chunks
                dims = spec.dims[1:]
            if tuple(got[n].dims) != dims:
                raise SwinEdgeError(
                    f"{bad}: {what} '{n}' dims {list(got[n].dims)} are not the model's "
                    f"{list(dims)}" + (" (without the batch dim)" if cfg.max_batch_size > 0 else "")
                )


def check_ensemble(cfg: Any, where: str | Path, members: Mapping[str, Any]) -> None:
    """Check an ensemble against its member configs: every step's model exists, its maps name
    real inputs/outputs, every tensor a step reads is an ensemble input or an earlier step's
    output with the same type, every ensemble output is produced, and the ensemble's
    max_batch_size is within each member's."""
    pb2 = model_config_pb2()
    bad = f"'{where}'"
    avail = {t.name: (t.data_type, tuple(t.dims)) for t in cfg.input}
    for i, step in enumerate(cfg.ensemble_scheduling.step):
        member = members.get(step.model_name)
        if member is None:
            raise SwinEdgeError(f"{bad}: step {i} runs '{step.model_name}', which is not here")
        if member.max_batch_size < cfg.max_batch_size:
            raise SwinEdgeError(
                f"{bad}: max_batch_size {cfg.max_batch_size} exceeds step model "
                f"'{step.model_name}''s {member.max_batch_size}"
            )
        m_in = {t.name: (t.data_type, tuple(t.dims)) for t in member.input}
        m_out = {t.name: (t.data_type, tuple(t.dims)) for t in member.output}
        if set(step.input_map) != set(m_in):
            raise SwinEdgeError(
                f"{bad}: step {i} maps inputs {sorted(step.input_map)} but "
                f"'{step.model_name}' takes {sorted(m_in)}"
            )
        for key, tensor in step.input_map.items():
            if tensor not in avail:
                raise SwinEdgeError(
                    f"{bad}: step {i} reads '{tensor}', which no earlier step or input makes"
                )
            if avail[tensor][0] != m_in[key][0]:
                have, want = (pb2.DataType.Name(x) for x in (avail[tensor][0], m_in[key][0]))
                raise SwinEdgeError(
                    f"{bad}: step {i} feeds {have} '{tensor}' to {want} input '{key}'"
                )
        for key, tensor in step.output_map.items():
            if key not in m_out:
                raise SwinEdgeError(
                    f"{bad}: step {i} maps output '{key}', which '{step.model_name}' lacks"
                )
            avail[tensor] = m_out[key]
    for t in cfg.output:
        if t.name not in avail:
            raise SwinEdgeError(f"{bad}: ensemble output '{t.name}' is made by no step")
        if avail[t.name] != (t.data_type, tuple(t.dims)):
            raise SwinEdgeError(
                f"{bad}: ensemble output '{t.name}' type/dims differ from the step making it"
            )


def config_dict(
    name: str,
    *,
    platform: str | None = None,
    backend: str | None = None,
    max_batch_size: int,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    **sections: Any,
) -> dict[str, Any]:
    """The fields of a config in Triton's documentation order (``sections``: any further
    ModelConfig fields, e.g. ``dynamic_batching``, ``instance_group``, ``parameters``)."""
    fields: dict[str, Any] = {"name": name, "platform": platform, "backend": backend}
    fields["max_batch_size"] = max_batch_size
    fields["input"] = list(inputs)
    fields["output"] = list(outputs)
    fields.update(sections)
    return fields


def tensor_fields(spec: TensorSpec, batching: bool, **extra: Any) -> dict[str, Any]:
    """``input``/``output`` entry for ``spec``: dims without the batch dim when batching."""
    dims = spec.dims[1:] if batching else spec.dims
    return {"name": spec.name, "data_type": Enum(spec.data_type), "dims": list(dims), **extra}


def string_params(params: Mapping[str, Any]) -> Map:
    """``parameters`` map entries: every value as ``{ string_value: "..." }``."""
    return Map({k: {"string_value": str(v)} for k, v in params.items()})
