"""Triton model configs, planned and validated before anything is written.

One model per precision/backend (:class:`TritonModel`), the batching they share
(:class:`BatchingConfig`) and an optional ensemble that takes encoded JPEG/PNG bytes
(:class:`EnsembleConfig`). :func:`plan_repository` renders every ``config.pbtxt``, parses it
into Triton's ``ModelConfig`` protobuf and checks it against the ONNX it serves (ensembles
against their members); :mod:`.repository` writes the result.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError
from .model_config import (
    NAME_RE,
    Enum,
    Map,
    ModelIO,
    TensorSpec,
    check_config,
    check_ensemble,
    config_dict,
    onnx_io,
    parse_config,
    render_pbtxt,
    string_params,
    tensor_fields,
)

BACKENDS = ("tensorrt", "onnxruntime", "openvino", "python")
TARGETS = ("gpu", "jetson", "cpu")
MAX_BATCH = 256
MAX_QUEUE_DELAY_US = 10_000_000
IMAGE_INPUT = "image"
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BatchingConfig:
    """Triton-side batching of every model that has a batch dim.

    ``max_batch_size`` is the largest batch Triton forms (it must match a TensorRT engine's
    optimization profile); ``preferred_batch_sizes`` the sizes the dynamic batcher waits for
    (default: half the max and the max); ``max_queue_delay_us`` how long a request may wait
    for others; ``dynamic=False`` leaves dynamic batching off (each request runs alone)."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    dynamic: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(self.preferred_batch_sizes))
        if not 1 <= self.max_batch_size <= MAX_BATCH:
            raise SwinEdgeError(
                f"max_batch_size {self.max_batch_size}: use 1..{MAX_BATCH} (the engine's "
                "optimization profile max)"
            )
        for b in self.preferred_batch_sizes:
            if not 1 <= b <= self.max_batch_size:
                raise SwinEdgeError(
                    f"preferred batch size {b} is outside 1..max_batch_size {self.max_batch_size}"
                )
        if not 0 <= self.max_queue_delay_us <= MAX_QUEUE_DELAY_US:
            raise SwinEdgeError(
                f"queue delay {self.max_queue_delay_us} us: use 0..{MAX_QUEUE_DELAY_US}"
            )

    def preferred(self, max_batch_size: int) -> list[int]:
        """Preferred sizes for a model batching up to ``max_batch_size``."""
        if self.preferred_batch_sizes:
            return sorted({b for b in self.preferred_batch_sizes if b <= max_batch_size})
        return sorted({b for b in (max_batch_size // 2, max_batch_size) if b > 1})


@dataclass(frozen=True)
class TritonModel:
    """One model of the repository.

    ``onnx``: the ONNX it serves; its input/output names, dtypes and dims make the config, and
    it is the model file itself for onnxruntime, python and openvino (unless ``model_file``).
    ``model_file``: tensorrt: an engine built on the target (None: built on the device from
    the deploy bundle); openvino: an IR ``.xml`` (its ``.bin`` beside it). ``threads``: ONNX
    Runtime intra-op / OpenVINO inference threads per instance (0: the backend's default, all
    cores). ``max_batch_size``: a TensorRT engine's profile max when it differs from the
    repository's batching (None: the repository's for a dynamic-batch ONNX, 0 for a static
    one). ``lower_int8``: python backend, run uint8 Q/DQ Gemms as MatMulIntegerToFloat.
    ``dynamic_batching``: override the repository's on/off for this model (None: keep it)."""

    name: str
    backend: str
    onnx: str | Path
    precision: str = "fp32"
    device: str = "cpu"
    instances: int = 1
    threads: int = 0
    model_file: str | Path | None = None
    max_batch_size: int | None = None
    lower_int8: bool = True
    dynamic_batching: bool | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise SwinEdgeError(
                f"Triton model name {self.name!r}: use letters, digits, '_', '.', '-'"
            )
        if self.backend not in BACKENDS:
            raise SwinEdgeError(f"backend {self.backend!r}: choose {', '.join(BACKENDS)}")
        devices = {"tensorrt": ("gpu",), "openvino": ("cpu",)}.get(self.backend, ("cpu", "gpu"))
        if self.device not in devices:
            raise SwinEdgeError(
                f"model '{self.name}': {self.backend} runs on {' or '.join(devices)}, not "
                f"{self.device!r}"
            )
        if self.instances < 1 or self.threads < 0:
            raise SwinEdgeError(f"model '{self.name}': instances must be >= 1, threads >= 0")
        if self.max_batch_size is not None and not 0 <= self.max_batch_size <= MAX_BATCH:
            raise SwinEdgeError(f"model '{self.name}': max_batch_size 0..{MAX_BATCH}")


@dataclass(frozen=True)
class EnsembleConfig:
    """An ensemble ``<target>_jpeg`` (or ``name``): encoded JPEG/PNG bytes (UINT8 ``[-1]``,
    one image per request) -> a Python preprocessing model ``<target>_preprocess`` (the
    model's own preprocessing, as calibration) -> the model ``target``. ``preprocess``: the
    PreprocessConfig or its dict (img_size, crop_pct, interpolation, mean, std)."""

    target: str
    preprocess: Any
    name: str | None = None
    instances: int = 1

    @property
    def ensemble_name(self) -> str:
        return self.name or f"{self.target}_jpeg"

    @property
    def preprocess_name(self) -> str:
        return f"{self.target}_preprocess"


@dataclass
class _Planned:
    """A model ready to write: its config text and the files of its version folder."""

    name: str
    text: str
    files: dict[str, Path]
    io: ModelIO | None
    info: dict[str, Any]
    config: Any = None


def _max_batch(model: TritonModel, io: ModelIO, batching: BatchingConfig) -> int:
    if model.backend == "python":  # the runner feeds a static-batch ONNX in chunks
        return model.max_batch_size or batching.max_batch_size
    if io.batch is not None:
        if model.max_batch_size:
            raise SwinEdgeError(
                f"model '{model.name}': '{model.onnx}' has a static batch of {io.batch}, so "
                "max_batch_size must be 0; export with --dynamic-batch to batch"
            )
        return 0
    return batching.max_batch_size if model.max_batch_size is None else model.max_batch_size


def _batching_sections(mbs: int, batching: BatchingConfig) -> dict[str, Any]:
    if mbs == 0 or not batching.dynamic:
        return {}
    return {
        "dynamic_batching": {
            "preferred_batch_size": batching.preferred(mbs),
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
        }
    }


def _instances(model: TritonModel) -> list[dict[str, Any]]:
    kind = "KIND_GPU" if model.device == "gpu" else "KIND_CPU"
    return [{"count": model.instances, "kind": Enum(kind)}]  # GPU: count per visible GPU


def _plan_model(model: TritonModel, batching: BatchingConfig) -> _Planned:
    if model.dynamic_batching is not None:
        batching = dataclasses.replace(batching, dynamic=model.dynamic_batching)
    io = onnx_io(model.onnx)
    mbs = _max_batch(model, io, batching)
    batched = mbs > 0
    if model.backend == "python" and io.batch is not None:  # chunked by the runner
        io_cfg = ModelIO(
            tuple(TensorSpec(t.name, t.data_type, (-1, *t.dims[1:])) for t in io.inputs),
            tuple(TensorSpec(t.name, t.data_type, (-1, *t.dims[1:])) for t in io.outputs),
        )
    else:
        io_cfg = io
    inputs = [tensor_fields(t, batched) for t in io_cfg.inputs]
    outputs = [tensor_fields(t, batched) for t in io_cfg.outputs]
    sections: dict[str, Any] = {}
    files: dict[str, Path] = {}
    platform = backend = None
    params: dict[str, Any] = {}
    extra_info: dict[str, Any] = {}
    if model.backend == "tensorrt":
        platform = "tensorrt_plan"
        if model.model_file is not None:
            files["model.plan"] = Path(model.model_file)
            manifest = Path(str(model.model_file) + ".json")
            if manifest.is_file():
                files["model.plan.json"] = manifest
    elif model.backend == "onnxruntime":
        platform = "onnxruntime_onnx"
        files["model.onnx"] = Path(model.model_file or model.onnx)
        params = {"intra_op_thread_count": model.threads, "inter_op_thread_count": 1}
        params["execution_mode"] = 0  # sequential: Swin is a chain, not branches
        if model.precision == "int8":  # 7: exact on x86 without VNNI with the default kernels
            import onnx

            from ..quantize.u8s8_safe import gemm_input_bits

            extra_info["gemm_input_bits"] = gemm_input_bits(
                onnx.load(str(files["model.onnx"]), load_external_data=False)
            )
    elif model.backend == "openvino":
        backend = "openvino"
        src = Path(model.model_file or model.onnx)
        if src.suffix == ".xml":
            files["model.xml"] = src
            files["model.bin"] = src.with_suffix(".bin")
        else:
            files["model.onnx"] = src
            sections["default_model_filename"] = "model.onnx"
        params = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if model.threads:
            params["INFERENCE_NUM_THREADS"] = model.threads
        if model.precision == "bf16":
            params["HINT_BF16"] = "YES"
    else:  # python: swin_edge's ONNX Runtime runner
        backend = "python"
        files["model.py"] = _HERE / "python_model.py"
        files["swin_edge_stub_compat.py"] = _HERE / "stub_compat.py"
        files["model.onnx"] = Path(model.model_file or model.onnx)
        params = {"onnx_file": "model.onnx", "threads": model.threads}
        params["lower_int8"] = int(model.lower_int8)
    fields = config_dict(
        model.name,
        platform=platform,
        backend=backend,
        max_batch_size=mbs,
        inputs=inputs,
        outputs=outputs,
        **_batching_sections(mbs, batching),
        instance_group=_instances(model),
        **sections,
    )
    if params:
        fields["parameters"] = string_params(params)
    for name, src in files.items():
        if not src.is_file():
            raise SwinEdgeError(f"model '{model.name}': '{src}' ({name}) does not exist")
    info = {
        "backend": platform or backend,
        "precision": model.precision,
        "device": model.device,
        "instances": model.instances,
        "max_batch_size": mbs,
        "dynamic_batching": mbs > 0 and batching.dynamic,
        "source_onnx": Path(model.onnx).name,
        **extra_info,
    }
    return _Planned(model.name, render_pbtxt(fields), files, io_cfg, info)


def _plan_ensemble(
    ens: EnsembleConfig, target: _Planned, batching: BatchingConfig
) -> tuple[_Planned, _Planned]:
    from .preprocess import preprocess_fields

    assert target.io is not None
    if len(target.io.inputs) != 1 or target.io.inputs[0].data_type != "TYPE_FP32":
        raise SwinEdgeError(f"ensemble: '{target.name}' must have one FP32 image input")
    mbs = target.info["max_batch_size"]
    inp = target.io.inputs[0]
    if mbs == 0 and inp.dims[0] != 1:
        raise SwinEdgeError(
            f"ensemble: '{target.name}' has a static batch of {inp.dims[0]}; one image per "
            "request needs batch 1 or a dynamic batch (export with --dynamic-batch)"
        )
    pp = preprocess_fields(ens.preprocess)
    if tuple(inp.dims[-2:]) != (pp["img_size"], pp["img_size"]):
        raise SwinEdgeError(
            f"ensemble: preprocessing makes {pp['img_size']}x{pp['img_size']} images but "
            f"'{target.name}' takes {inp.dims[-2:]}"
        )
    batched = mbs > 0
    image = {
        "name": IMAGE_INPUT,
        "data_type": Enum("TYPE_UINT8"),
        "dims": [-1],
    }
    pre_fields = config_dict(
        ens.preprocess_name,
        backend="python",
        max_batch_size=mbs,
        inputs=[{**image, "allow_ragged_batch": True} if batched else image],
        outputs=[tensor_fields(TensorSpec(inp.name, "TYPE_FP32", inp.dims), batched)],
        **_batching_sections(mbs, batching),
        instance_group=[{"count": ens.instances, "kind": Enum("KIND_CPU")}],
        parameters=string_params({"preprocess": json.dumps(pp, separators=(",", ":"))}),
    )
    pre = _Planned(
        ens.preprocess_name,
        render_pbtxt(pre_fields),
        {
            "model.py": _HERE / "python_preprocess.py",
            "swin_edge_preprocess.py": _HERE / "preprocess.py",
            "swin_edge_stub_compat.py": _HERE / "stub_compat.py",
        },
        None,
        {"backend": "python", "role": "preprocess", "max_batch_size": mbs, "preprocess": pp},
    )
    outputs = [tensor_fields(t, batched) for t in target.io.outputs]  # same names as the model's
    ens_fields = config_dict(
        ens.ensemble_name,
        platform="ensemble",
        max_batch_size=mbs,
        inputs=[image],
        outputs=outputs,
        ensemble_scheduling={
            "step": [
                {
                    "model_name": ens.preprocess_name,
                    "model_version": -1,
                    "input_map": Map({IMAGE_INPUT: IMAGE_INPUT}),
                    "output_map": Map({inp.name: "preprocessed"}),
                },
                {
                    "model_name": target.name,
                    "model_version": -1,
                    "input_map": Map({inp.name: "preprocessed"}),
                    "output_map": Map({t.name: t.name for t in target.io.outputs}),
                },
            ]
        },
    )
    ens_planned = _Planned(
        ens.ensemble_name,
        render_pbtxt(ens_fields),
        {},
        None,
        {"backend": "ensemble", "steps": [ens.preprocess_name, target.name], "max_batch_size": mbs},
    )
    return pre, ens_planned


def plan_repository(
    models: Sequence[TritonModel],
    batching: BatchingConfig | None = None,
    ensemble: EnsembleConfig | None = None,
) -> list[_Planned]:
    """Render and validate every config (parsed into Triton's ModelConfig, checked against its
    ONNX, ensembles against their members) without writing anything."""
    batching = batching or BatchingConfig()
    if not models:
        raise SwinEdgeError("a Triton repository needs at least one model")
    names = [m.name for m in models]
    planned = [_plan_model(m, batching) for m in models]
    if ensemble is not None:
        by_name = dict(zip(names, planned, strict=True))
        if ensemble.target not in by_name:
            raise SwinEdgeError(
                f"ensemble target '{ensemble.target}' is not a model here ({', '.join(names)})"
            )
        planned += _plan_ensemble(ensemble, by_name[ensemble.target], batching)
    seen: set[str] = set()
    for p in planned:
        if p.name in seen:
            raise SwinEdgeError(f"two models are named '{p.name}'; give each its own name")
        seen.add(p.name)
        where = f"{p.name}/config.pbtxt"
        p.config = parse_config(p.text, where)
        check_config(p.config, where, p.io, p.name)
    configs = {p.name: p.config for p in planned}
    for p in planned:
        if p.config.platform == "ensemble":
            check_ensemble(p.config, f"{p.name}/config.pbtxt", configs)
    return planned
