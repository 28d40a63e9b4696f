"""Per-layer facts of a built engine from TensorRT's engine inspector (pure Python).

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` and trtexec's
``--exportLayerInfo`` write the same JSON: ``{"Layers": [...], "Bindings": [...]}``; with
``ProfilingVerbosity.DETAILED`` every layer is an object with ``Name``, ``LayerType``, ``Inputs``/
``Outputs`` (each with ``Format/Datatype``: "Row major linear FP32", "Half", "Int8", ...) and,
for layers compiled by Myelin, ``Metadata`` naming the ONNX nodes (``[ONNX Layer: name]``
joined by U+001F); with less verbosity, layers are bare names and nothing is known about them.

A layer's precision is that of its first input (TensorRT Engine Explorer's convention).
FP32 is expected only for LayerNorm/Softmax (kept FP32 on purpose) and the FP32 network I/O;
any other FP32 layer in an INT8/FP16 engine is reported. A DLA subgraph is one engine layer
whose ``LayerType`` names DLA (TensorRT's DLA runner; trtexec's build log lists it as
``[DlaLayer] {ForeignNode[...]}``); every other layer runs on the GPU.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# Checked in this order: "UInt8" contains "Int8", "BFloat16" contains "Float".
_DTYPES = (
    (r"UInt8", "uint8"),
    (r"BFloat16|BF16", "bf16"),
    (r"FP16|Half", "fp16"),
    (r"FP32|Float", "fp32"),
    (r"Int8|INT8", "int8"),
    (r"Int32|INT32", "int32"),
    (r"Int64|INT64", "int64"),
    (r"FP8|E4M3", "fp8"),
    (r"FP4|E2M1", "fp4"),
    (r"Bool|BOOL", "bool"),
)
# ONNX node names whose FP32 is intended: the ops kept FP32 and the casts at the FP32 I/O.
FP32_EXPECTED = re.compile(r"LayerNormalization|Softmax|_cast_to_|graph_(?:in|out)put_cast")
_NON_COMPUTE = frozenset({"NoOp"})


def format_dtype(fmt: str) -> str | None:
    """Data type of a ``Format/Datatype`` string: 'Row major linear FP32' -> 'fp32',
    'Half' -> 'fp16', 'Four wide channel vectorized row major Int8 format' -> 'int8'."""
    for pattern, name in _DTYPES:
        if re.search(rf"(?<![A-Za-z]){pattern}(?![a-z])", fmt):
            return name
    return None


@dataclass
class EngineLayer:
    name: str
    layer_type: str
    precision: str | None
    device: str  # "GPU" or "DLA"
    onnx_nodes: list[str] = field(default_factory=list)
    touches_io: bool = False

    @property
    def fp32_expected(self) -> bool:
        """FP32 on purpose: LayerNorm/Softmax, or a layer at the network's FP32 inputs/outputs."""
        text = " ".join([self.name, *self.onnx_nodes])
        return self.touches_io or bool(FP32_EXPECTED.search(text))


@dataclass
class LayerSummary:
    """Counts over the compute layers of one engine."""

    detailed: bool
    total: int
    dla: int
    gpu: int
    precisions: dict[str, int]
    fp32_unexpected: list[str]
    fp32_expected: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_nodes(layer: dict[str, Any]) -> list[str]:
    meta = str(layer.get("Metadata") or "")
    return re.findall(r"\[ONNX Layer: ([^\]]*)\]", meta)


def parse_engine_info(info: str | dict[str, Any]) -> tuple[list[EngineLayer], bool]:
    """Engine layers from the inspector's JSON (text or parsed); second value: whether the
    engine was built with detailed profiling verbosity (otherwise layers are names only)."""
    data = json.loads(info) if isinstance(info, str) else info
    if isinstance(data, list):  # some tools save the bare layer list
        data = {"Layers": data, "Bindings": []}
    raw = data.get("Layers", [])
    bindings = set(data.get("Bindings", []))
    detailed = bool(raw) and all(isinstance(r, dict) for r in raw)
    layers = []
    for r in raw:
        if not isinstance(r, dict):
            layers.append(EngineLayer(str(r), "", None, "GPU"))
            continue
        tensors = list(r.get("Inputs", [])) + list(r.get("Outputs", []))
        dtypes = [format_dtype(str(t.get("Format/Datatype", ""))) for t in r.get("Inputs", [])]
        dtypes += [format_dtype(str(t.get("Format/Datatype", ""))) for t in r.get("Outputs", [])]
        kind = f"{r.get('LayerType', '')} {r.get('ParameterType', '')}"
        layers.append(
            EngineLayer(
                name=str(r.get("Name", "")),
                layer_type=str(r.get("LayerType", "")),
                precision=next((d for d in dtypes if d), None),
                device="DLA" if re.search(r"dla", kind, re.IGNORECASE) else "GPU",
                onnx_nodes=_onnx_nodes(r),
                touches_io=any(t.get("Name") in bindings for t in tensors),
            )
        )
    return layers, detailed


def summarize_layers(info: str | dict[str, Any]) -> LayerSummary:
    """Layer counts per device and per precision, and the FP32 layers split into expected
    (LayerNorm/Softmax/I/O) and unexpected."""
    layers, detailed = parse_engine_info(info)
    compute = [la for la in layers if la.layer_type not in _NON_COMPUTE]
    fp32 = [la for la in compute if la.precision == "fp32"]
    return LayerSummary(
        detailed=detailed,
        total=len(compute),
        dla=sum(la.device == "DLA" for la in compute),
        gpu=sum(la.device == "GPU" for la in compute),
        precisions=dict(Counter(la.precision or "unknown" for la in compute).most_common()),
        fp32_unexpected=[la.name for la in fp32 if not la.fp32_expected],
        fp32_expected=[la.name for la in fp32 if la.fp32_expected],
    )


def engine_info_json(engine: Any, trt: Any) -> str:
    """The inspector's JSON for a deserialized ICudaEngine."""
    inspector = engine.create_engine_inspector()
    return inspector.get_engine_information(trt.LayerInformationFormat.JSON)


__all__ = [
    "EngineLayer",
    "LayerSummary",
    "engine_info_json",
    "format_dtype",
    "parse_engine_info",
    "summarize_layers",
]
