"""Stand-ins for ``tensorrt`` and ``pycuda.driver`` that expose only the REAL API names.

The names (enum members, class attributes, module functions) come from
``tests/fixtures/tensorrt_api.json``, read from NVIDIA's binding wheels for TensorRT 10.3 (JetPack
6.2), 10.13 and 11.4 (see its ``_provenance``). Any attribute a real class lacks raises
AttributeError, as the real module would, so "TensorRT 11 has no BuilderFlag.FP16" is tested
against 11.4's actual name list. Behaviour (what a call returns) is set per test through
:class:`Behaviour`, and every call that matters is recorded in ``Behaviour.calls``.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

API = json.loads((Path(__file__).parents[1] / "fixtures" / "tensorrt_api.json").read_text())
VERSIONS = tuple(API["versions"])


@dataclass
class Behaviour:
    input_shape: tuple[int, ...] = (-1, 3, 32, 32)
    output_shape: tuple[int, ...] = (-1, 5)
    extra_outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, shape) after "logits"
    profile: tuple[int, int, int] | None = None  # set by the built engine's config
    num_dla_cores: int = 0
    parse_ok: bool = True
    build_ok: bool = True
    timing_cache_ok: bool = True
    deserialize_ok: bool = True
    set_input_shape_ok: bool = True
    set_tensor_address_ok: bool = True
    execute_ok: bool = True
    engine_info: str = '{"Layers": [], "Bindings": ["input", "logits"]}'
    calls: dict[str, Any] = field(default_factory=dict)

    def log(self, key: str, value: Any) -> None:
        self.calls.setdefault(key, []).append(value)

    @property
    def outputs(self) -> dict[str, tuple[int, ...]]:
        return {"logits": self.output_shape, **dict(self.extra_outputs)}


class _Member:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Member) and (self.enum, self.name) == (other.enum, other.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def _enum(name: str, members: list[str]) -> type:
    ns = {m: _Member(name, m, i) for i, m in enumerate(members)}
    ns["__members__"] = dict(ns)
    return type(name, (), ns)


class _Strict:
    """Public attributes limited to the real class's names (``_real``)."""

    _real: frozenset[str] = frozenset()
    _cls: str = ""
    _version: str = ""

    def _check(self, name: str) -> None:
        if not name.startswith("_") and name not in type(self)._real:
            raise AttributeError(
                f"'{type(self)._cls}' object has no attribute '{name}' "
                f"(TensorRT {type(self)._version})"
            )

    def __getattribute__(self, name: str) -> Any:
        object.__getattribute__(self, "_check")(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._check(name)
        object.__setattr__(self, name, value)


def make_tensorrt(version: str, b: Behaviour) -> types.ModuleType:
    api = API["versions"][version]
    mod = types.ModuleType("tensorrt")
    mod.__version__ = api["__version__"]
    for name, members in api["enums"].items():
        setattr(mod, name, _enum(name, members))

    def strict(cls_name: str, real_name: str | None = None):
        def deco(cls: type) -> type:
            cls._real = frozenset(api["classes"][real_name or cls_name])
            cls._cls, cls._version = real_name or cls_name, api["__version__"]
            setattr(mod, cls_name, cls)
            return cls

        return deco

    @strict("Logger")
    class Logger(_Strict):
        def __init__(self, severity: Any = None) -> None:
            self.min_severity = severity

    for sev in ("ERROR", "INFO", "INTERNAL_ERROR", "VERBOSE", "WARNING"):
        setattr(Logger, sev, _Member("Severity", sev, 0))

    @strict("ITensor")
    class ITensor(_Strict):
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape = name, shape

    @strict("INetworkDefinition")
    class INetworkDefinition(_Strict):
        def __init__(self) -> None:
            self.num_inputs = 1

        def get_input(self, i: int) -> ITensor:
            return ITensor("input", b.input_shape)

    @strict("OnnxParser")
    class OnnxParser(_Strict):
        def __init__(self, network: Any, logger: Any) -> None:
            self.num_errors = 0 if b.parse_ok else 1

        def parse_from_file(self, path: str) -> bool:
            b.log("parsed", path)
            return b.parse_ok

        def get_error(self, i: int) -> str:
            return "unsupported node"

    @strict("ITimingCache")
    class ITimingCache(_Strict):
        def serialize(self) -> bytes:
            return b"timing-cache"

    @strict("IOptimizationProfile")
    class IOptimizationProfile(_Strict):
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            b.log("profile", (name, lo, opt, hi))
            b.profile = (lo[0], opt[0], hi[0])

    @strict("IBuilderConfig")
    class IBuilderConfig(_Strict):
        def __init__(self) -> None:
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            b.log("pool", (pool, size))

        def set_flag(self, flag: Any) -> None:
            b.log("set_flag", flag.name)

        def clear_flag(self, flag: Any) -> None:
            b.log("clear_flag", flag.name)

        def create_timing_cache(self, blob: bytes) -> ITimingCache:
            return ITimingCache()

        def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
            return b.timing_cache_ok

        def get_timing_cache(self) -> ITimingCache:
            return ITimingCache()

        def add_optimization_profile(self, profile: Any) -> int:
            return 0

    # properties the builder writes and a test reads back
    for prop in ("profiling_verbosity", "default_device_type", "DLA_core"):
        setattr(
            IBuilderConfig,
            prop,
            property(
                lambda self, p=prop: b.calls.get(p, [None])[-1],
                lambda self, v, p=prop: b.log(p, v),
            ),
        )

    @strict("IHostMemory")
    class IHostMemory(_Strict):
        def __init__(self, data: bytes) -> None:
            object.__setattr__(self, "_data", data)
            self.nbytes = len(data)

        def __bytes__(self) -> bytes:
            return self._data

    @strict("Builder")
    class Builder(_Strict):
        def __init__(self, logger: Any) -> None:
            self.num_DLA_cores = b.num_dla_cores

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            b.log("network_flags", flags)
            return INetworkDefinition()

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: Any, config: Any) -> IHostMemory | None:
            return IHostMemory(b"fake-plan") if b.build_ok else None

    @strict("EngineInspector")
    class EngineInspector(_Strict):
        def get_engine_information(self, fmt: Any) -> str:
            b.log("inspector_format", fmt.name)
            return b.engine_info

    @strict("IExecutionContext")
    class IExecutionContext(_Strict):
        def __init__(self) -> None:
            object.__setattr__(self, "_shapes", {})
            object.__setattr__(self, "_addresses", set())

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            b.log("set_input_shape", tuple(shape))
            if b.set_input_shape_ok:
                self._shapes["input"] = tuple(shape)
                for out, out_shape in b.outputs.items():
                    self._shapes[out] = (shape[0], *out_shape[1:])
            return b.set_input_shape_ok

        def get_tensor_shape(self, name: str) -> tuple:
            return self._shapes[name]

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            b.log("set_tensor_address", name)
            if b.set_tensor_address_ok:
                self._addresses.add(name)
            return b.set_tensor_address_ok

        def execute_async_v3(self, stream: int) -> bool:
            b.log("execute", stream)
            # TensorRT 10+: enqueueV3 fails unless every I/O tensor has an address (or an
            # output allocator): "Neither address or allocator is set for output tensor ..."
            return b.execute_ok and self._addresses >= {"input", *b.outputs}

    @strict("ICudaEngine")
    class ICudaEngine(_Strict):
        def __init__(self) -> None:
            self.num_io_tensors = 1 + len(b.outputs)

        def get_tensor_name(self, i: int) -> str:
            return ("input", *b.outputs)[i]

        def get_tensor_mode(self, name: str) -> Any:
            return mod.TensorIOMode.INPUT if name == "input" else mod.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple:
            return b.input_shape if name == "input" else b.outputs[name]

        def get_tensor_profile_shape(self, name: str, index: int) -> list:
            lo, opt, hi = b.profile
            return [(n, *b.input_shape[1:]) for n in (lo, opt, hi)]

        def get_tensor_dtype(self, name: str) -> Any:
            return mod.DataType.FLOAT

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext()

        def create_engine_inspector(self) -> EngineInspector:
            return EngineInspector()

    @strict("Runtime")
    class Runtime(_Strict):
        def __init__(self, logger: Any) -> None:
            self.num_DLA_cores = b.num_dla_cores
            b.log("runtimes", self)

        def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
            b.log("deserialize", bytes(data))
            return ICudaEngine() if b.deserialize_ok else None

    Runtime.DLA_core = property(
        lambda self: b.calls.get("runtime_dla_core", [-1])[-1],
        lambda self, v: b.log("runtime_dla_core", v),
    )

    def nptype(dtype: Any) -> type:
        return {"FLOAT": np.float32, "HALF": np.float16}[dtype.name]

    mod.nptype = nptype
    for fn in api["functions"]:
        if not hasattr(mod, fn):
            setattr(mod, fn, lambda *a, **k: None)
    return mod


def make_pycuda(b: Behaviour, gpu: str = "Orin", cc: tuple[int, int] = (8, 7)) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")

    class Context:
        def push(self) -> None:
            b.log("ctx", "push")

        def pop(self) -> None:
            b.log("ctx", "pop")

    class Device:
        def __init__(self, i: int) -> None:
            pass

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return gpu

        def compute_capability(self) -> tuple[int, int]:
            return cc

        def retain_primary_context(self) -> Context:
            return Context()

    class DeviceAllocation:
        made = 0

        def __init__(self, n: int) -> None:
            self.n = n
            DeviceAllocation.made += 1
            self.id = DeviceAllocation.made  # what memcpy_dtoh_async writes: which buffer

        def __int__(self) -> int:
            return 4096 * self.id

        def free(self) -> None:
            b.log("free", self.n)

    class Stream:
        handle = 7

        def synchronize(self) -> None:
            pass

    class Event:
        def record(self, stream: Any) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def time_till(self, other: Any) -> float:
            return 1.0

    drv.init = lambda: None
    drv.Device, drv.Stream, drv.Event = Device, Stream, Event
    drv.mem_alloc = DeviceAllocation
    drv.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    drv.memcpy_htod_async = lambda dst, src, stream: None
    drv.memcpy_dtoh_async = lambda dst, src, stream: dst.fill(src.id)
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    return pkg


def install(monkeypatch: Any, version: str, b: Behaviour) -> types.ModuleType:
    """Put the fakes in ``sys.modules`` for this test; returns the fake ``tensorrt``."""
    trt = make_tensorrt(version, b)
    pkg = make_pycuda(b)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pkg.driver)
    return trt
