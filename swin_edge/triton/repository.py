"""A Triton Inference Server model repository for a built model.

One Triton model per precision/backend (:class:`TritonModel`): ``tensorrt_plan`` (an engine
built here, or built on the device by the deploy bundle's script: ``build_engines.sh``),
``onnxruntime_onnx`` on the CPU or GPU, ``openvino`` (x86 CPUs) and ``python`` (swin_edge's
ONNX Runtime runner in Triton's Python backend: what the bundled local server can run). An
optional ensemble (:class:`EnsembleConfig`) takes encoded JPEG/PNG bytes and preprocesses them
as calibration did, so clients send images, not tensors.

Layout (Triton's)::

    REPO/<model>/config.pbtxt
    REPO/<model>/<version>/model.plan | model.onnx | model.xml + model.bin | model.py + ...
    REPO/repository.json   manifest: models, backends, files and their sha256
    REPO/README.md         how to serve it and call it
    REPO/build_engines.sh  (TensorRT engines still to build) fills <model>/<version>/model.plan

Every ``config.pbtxt`` is parsed into Triton's ``ModelConfig`` protobuf and checked against the
ONNX it serves before anything is written; the repository is built in a staging folder beside
``REPO`` and swapped in whole, so a failure leaves no partial or invalid repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform as _platform
import re
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import SwinEdgeError
from ..run_folder import staged_run_folder
from ..utils import sha256_file, write_json_atomic, write_text_atomic
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

FORMAT = "swin_edge.triton-repository/1"
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
class RepositoryResult:
    """What was written: the repository, its model names, and TensorRT models whose engine
    ``build_engines.sh`` must still build on the device."""

    path: Path
    models: list[str]
    pending_engines: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


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


def validate_repository(path: str | Path) -> dict[str, Any]:
    """Parse and check every ``config.pbtxt`` of an existing repository (and its ensembles);
    returns {model name: ModelConfig}. A model folder without its version folder or model file
    is an error, except a TensorRT engine that ``build_engines.sh`` has yet to build."""
    path = Path(path)
    if not path.is_dir():
        raise SwinEdgeError(f"'{path}' is not a folder; pass a Triton model repository")
    configs: dict[str, Any] = {}
    pending = (path / "build_engines.sh").is_file()
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cfg_path = folder / "config.pbtxt"
        if not cfg_path.is_file():
            raise SwinEdgeError(f"'{folder}' has no config.pbtxt; every model folder needs one")
        cfg = parse_config(cfg_path.read_text(encoding="utf-8"), cfg_path)
        check_config(cfg, cfg_path, name=folder.name)
        versions = [v for v in folder.iterdir() if v.is_dir() and v.name.isdigit()]
        if not versions:
            raise SwinEdgeError(f"'{folder}' has no version folder (e.g. {folder.name}/1/)")
        if cfg.platform != "ensemble":
            fname = cfg.default_model_filename or _DEFAULT_FILE.get(cfg.platform or cfg.backend, "")
            for v in versions:
                if fname and not (v / fname).exists():
                    if cfg.platform == "tensorrt_plan" and pending:
                        continue
                    raise SwinEdgeError(f"'{v / fname}' is missing; rewrite the repository")
        configs[folder.name] = cfg
    if not configs:
        raise SwinEdgeError(f"'{path}' holds no models")
    for name, cfg in configs.items():
        if cfg.platform == "ensemble":
            check_ensemble(cfg, path / name / "config.pbtxt", configs)
    return configs


_DEFAULT_FILE = {
    "tensorrt_plan": "model.plan",
    "onnxruntime_onnx": "model.onnx",
    "openvino": "model.xml",
    "python": "model.py",
}


BUILD_SCRIPT = """#!/usr/bin/env bash
# Build this repository's TensorRT engines on the device that will serve them (engines are
# tied to the GPU and TensorRT release), with the deploy bundle's build_engine.sh, and move each
# to <model>/{version}/model.plan (its manifest: model.plan.json). Run it before starting
# tritonserver; then: tritonserver --model-repository "$(pwd)"
set -euo pipefail
cd "$(dirname "$0")"
BUNDLE={bundle}
build() {{  # build PRECISION MODEL
  (cd "$BUNDLE" && ./build_engine.sh "$1")
  mv -f "$BUNDLE/model.$1.engine" "$2/{version}/model.plan"
  if [ -f "$BUNDLE/model.$1.engine.json" ]; then
    mv -f "$BUNDLE/model.$1.engine.json" "$2/{version}/model.plan.json"
  fi
  echo "built $2/{version}/model.plan"
}}
{builds}
"""

README = """# Triton model repository: {name}

Written by swin_edge {swin_edge}. Serve it with NVIDIA Triton Inference Server (container
`nvcr.io/nvidia/tritonserver:<yy.mm>-py3`, or the JetPack release on Jetson):

    {prepare}tritonserver --model-repository "$(pwd)"

| model | backend | precision | device | max batch |
| --- | --- | --- | --- | --- |
{rows}

Inputs and outputs (names, types, dims) are those of the ONNX each model serves; see each
`config.pbtxt`. `repository.json` lists every file with its sha256.

Dynamic batching: {batching}.

Triton loads every model here at start; a backend your server lacks (OpenVINO on Jetson, a GPU
model on a CPU-only host) fails its model, so start with
`--model-control-mode=explicit --load-model=<name>` to load only some.
{ensemble}{u8s8}"""

U8S8_NOTE = """
`{name}` on an x86 CPU without VNNI or AMX (AVX2 only, or AVX-512 without VNNI):
Triton's ONNX Runtime backend cannot set `session.x64quantprecision`, so it runs ONNX Runtime's
fast u8s8 kernels, which sum pairs of products in saturating int16 and lose fidelity
(`scripts/u8s8_saturation.py` in swin_edge prints how much for this model). Serve the
Python-backend model on such a CPU, or quantize with `--gemm-input-bits 7` (exact there with the
fast kernels, in ONNX Runtime and OpenVINO); with VNNI or AMX the kernels are exact.
"""


def _readme(
    res_models: dict[str, Any], batching: BatchingConfig, base: str, pending: list[str]
) -> str:
    rows = "\n".join(
        f"| `{n}` | {m['backend']} | {m.get('precision', '-')} | {m.get('device', 'cpu')} | "
        f"{m['max_batch_size']} |"
        for n, m in res_models.items()
    )
    ens = [n for n, m in res_models.items() if m["backend"] == "ensemble"]
    ensemble = ""
    if ens:
        steps = res_models[ens[0]]["steps"]
        ensemble = (
            f"\n`{ens[0]}` takes encoded JPEG/PNG bytes (UINT8, shape [1, nbytes]: one image\n"
            f"per request) and returns `{steps[1]}`'s outputs; `{steps[0]}`\n"
            "preprocesses them as calibration did (Python backend: needs numpy and Pillow in\n"
            "Triton's Python).\n"
        )
    batch = (
        f"on, preferred sizes {batching.preferred(batching.max_batch_size)}, queue delay "
        f"{batching.max_queue_delay_us} us"
        if batching.dynamic
        else "off"
    )
    prepare = (
        "./build_engines.sh     # once, on the device: TensorRT engines\n    " if pending else ""
    )
    cpu_int8_ort = [
        n
        for n, m in res_models.items()
        if m["backend"] == "onnxruntime_onnx"
        and m.get("precision") == "int8"
        and m.get("device", "cpu") == "cpu"
        and m.get("gemm_input_bits", 8) == 8
    ]
    return README.format(
        name=base,
        swin_edge=__version__,
        prepare=prepare,
        rows=rows,
        batching=batch,
        ensemble=ensemble,
        u8s8=U8S8_NOTE.format(name=cpu_int8_ort[0]) if cpu_int8_ort else "",
    )


def _check_repository_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a non-empty folder that is not ours."""
    if out.exists() and not out.is_dir():
        raise SwinEdgeError(f"--out '{out}' is a file; pass a folder for the repository")
    if (
        out.is_dir()
        and any(not p.name.startswith(".") for p in out.iterdir())
        and not _is_ours(out)
    ):
        raise SwinEdgeError(
            f"--out '{out}' is a folder that is not a swin_edge Triton repository; it would "
            "be replaced whole, so pass a new or empty folder"
        )


def _staged(out: Path) -> contextlib.AbstractContextManager[Path]:
    """A staging folder beside ``out`` that replaces it whole on success."""
    return staged_run_folder(out, _check_repository_folder)


def _is_ours(folder: Path) -> bool:
    try:
        return json.loads((folder / "repository.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _extract_bundle(bundle: Path, dest: Path) -> dict[str, Any]:
    """Unpack the deploy bundle (its build_engine.sh builds model.<precision>.engine)."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            tar.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as e:
        raise SwinEdgeError(
            f"'{bundle}' is not a readable deploy bundle ({e}); make it with "
            "`python -m swin_edge deploy`"
        ) from None
    if not (dest / "build_engine.sh").is_file():
        raise SwinEdgeError(f"'{bundle}' has no build_engine.sh; make it with swin_edge deploy")
    try:
        return json.loads((dest / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def write_repository(
    out: str | Path,
    models: Sequence[TritonModel],
    batching: BatchingConfig | None = None,
    *,
    ensemble: EnsembleConfig | None = None,
    trt_bundle: str | Path | None = None,
    version: int = 1,
    base_name: str = "model",
    notes: Sequence[str] = (),
) -> RepositoryResult:
    """Validate every config, then write the repository ``out`` whole (staged, swapped in).

    ``trt_bundle``: the ``.tar.gz`` of :func:`swin_edge.deploy.make_bundle`, needed when a
    tensorrt model has no ``model_file``: it is unpacked into ``<first such model>/engine_build``
    (Triton ignores non-numeric folders in a model folder) and ``build_engines.sh`` builds the
    engines on the device with its ``build_engine.sh``. ``out`` must be new, empty, or an
    earlier swin_edge repository (replaced)."""
    out = Path(out)
    batching = batching or BatchingConfig()
    if version < 1:
        raise SwinEdgeError(f"version {version}: Triton versions are integers >= 1")
    planned = plan_repository(models, batching, ensemble)
    by_model = {m.name: m for m in models}
    pending = [m.name for m in models if m.backend == "tensorrt" and m.model_file is None]
    if pending and trt_bundle is None:
        raise SwinEdgeError(
            f"TensorRT model(s) {', '.join(pending)} have no engine; pass the deploy bundle "
            "(built on the device) or an engine built on this GPU"
        )
    info: dict[str, Any] = {}
    with _staged(out) as stage:
        for p in planned:
            folder = stage / p.name
            (folder / str(version)).mkdir(parents=True)
            write_text_atomic(folder / "config.pbtxt", p.text)
            for name, src in p.files.items():
                shutil.copyfile(src, folder / str(version) / name)
            info[p.name] = {**p.info, "config": f"{p.name}/config.pbtxt"}
        if pending:
            assert trt_bundle is not None
            bundle_dir = Path(pending[0]) / "engine_build"
            manifest = _extract_bundle(Path(trt_bundle), stage / bundle_dir)
            _check_bundle(manifest, [by_model[n] for n in pending], info)
            builds = "\n".join(f"build {by_model[n].precision} {n}" for n in pending)
            script = BUILD_SCRIPT.format(bundle=str(bundle_dir), version=version, builds=builds)
            write_text_atomic(stage / "build_engines.sh", script)
            os.chmod(stage / "build_engines.sh", 0o755)
        for name in info:  # sha256 of every file, relative to the repository
            folder = stage / name
            info[name]["files"] = {
                str(f.relative_to(stage)): sha256_file(f)
                for f in sorted(folder.rglob("*"))
                if f.is_file()
            }
        manifest_doc = {
            "format": FORMAT,
            "swin_edge": __version__,
            "name": base_name,
            "version": version,
            "batching": asdict(batching),
            "models": info,
            "pending_engines": pending,
            "ensemble": ensemble.ensemble_name if ensemble else None,
            "notes": list(notes),
        }
        write_json_atomic(stage / "repository.json", manifest_doc)
        write_text_atomic(stage / "README.md", _readme(info, batching, base_name, pending))
        validate_repository(stage)  # what was written parses and hangs together
    return RepositoryResult(out, list(info), pending, manifest_doc)


def _check_bundle(manifest: Mapping[str, Any], models: Sequence[TritonModel], info: dict) -> None:
    """The bundle must build the precisions asked for, with the batch profile of the configs."""
    deploy = manifest.get("deploy") or {}
    files = manifest.get("files") or {}
    sources = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
    for m in models:
        src = sources.get(m.precision)
        if files and src not in files:
            raise SwinEdgeError(
                f"the deploy bundle has no {m.precision} ONNX for '{m.name}'; deploy with "
                f"--precision {m.precision}"
            )
        mbs = info[m.name]["max_batch_size"]
        bundle_max = deploy.get("max_batch")
        if mbs and bundle_max is not None and deploy.get("dla_core") is None and bundle_max != mbs:
            raise SwinEdgeError(
                f"'{m.name}': max_batch_size {mbs} but the bundle builds engines up to batch "
                f"{bundle_max}; use the same --max-batch for both"
            )


# -- planning: which models a deploy or a build produces ----------------------------------


def default_target() -> str:
    """``jetson`` on aarch64 Linux (JetPack), else ``gpu``."""
    return "jetson" if _platform.machine() in ("aarch64", "arm64") else "gpu"


def deploy_models(
    base: str,
    precision: str,
    fp32_onnx: str | Path,
    precision_onnx: str | Path | None = None,
    *,
    target: str = "gpu",
    cpu_int8_onnx: str | Path | None = None,
    cpu_int8_ort: str | Path | None = None,
    openvino_ir: str | Path | None = None,
    cpu_threads: int = 0,
    primary: str | None = None,
    engine: str | Path | None = None,
    engine_max_batch: int | None = None,
    python: bool = False,
) -> list[TritonModel]:
    """The models of a repository for ``target``, the deployed one first (the ensemble's
    default target). Names: ``<base>_<precision>_<backend>[_gpu]``.

    gpu / jetson: TensorRT for ``precision`` (from ``precision_onnx``, the ONNX its engine is
    built from; ``engine``: one built on this GPU, else the deploy bundle builds it on the
    device), ONNX Runtime fp32 on the GPU, and ONNX Runtime on the CPU (fp32; int8 when
    ``cpu_int8_onnx``, the ``cpu``-recipe Q/DQ, is given: it runs ``cpu_int8_ort``, the lowered
    file, when given). cpu: those CPU models and, on x86, OpenVINO for ``precision``
    (``openvino_ir`` or the ONNX); ``primary`` (onnxruntime | openvino: the runtime ``build``
    chose) goes first. ``python``: also ``<base>_<precision>_python``, swin_edge's runner in
    Triton's Python backend (what the bundled local server runs)."""
    if target not in TARGETS:
        raise SwinEdgeError(f"Triton target {target!r}: choose {', '.join(TARGETS)}")
    if precision not in ("fp32", "fp16", "bf16", "int8"):
        raise SwinEdgeError(f"precision {precision!r}: choose fp32, fp16, bf16 or int8")
    gpu = target in ("gpu", "jetson")
    if gpu and precision == "bf16":
        raise SwinEdgeError("bf16 is a CPU precision (OpenVINO); use the cpu target")
    if not gpu and precision == "fp16":
        raise SwinEdgeError("fp16 needs TensorRT; use the gpu or jetson target")
    if precision == "int8" and not gpu and cpu_int8_onnx is None and openvino_ir is None:
        raise SwinEdgeError("an int8 CPU repository needs the cpu-recipe INT8 ONNX")
    models: list[TritonModel] = []
    if gpu:
        src = fp32_onnx if precision == "fp32" else precision_onnx
        if src is None and precision == "fp16":
            src = fp32_onnx  # the FP16 ONNX keeps FP32 I/O: the same config
        if src is None:
            raise SwinEdgeError(f"a {precision} TensorRT model needs its {precision} ONNX")
        models.append(
            TritonModel(
                f"{base}_{precision}_tensorrt",
                "tensorrt",
                src,
                precision,
                device="gpu",
                model_file=engine,
                max_batch_size=engine_max_batch,
            )
        )
        models.append(
            TritonModel(f"{base}_fp32_onnxruntime_gpu", "onnxruntime", fp32_onnx, device="gpu")
        )
    ort = dict(backend="onnxruntime", threads=cpu_threads)
    if cpu_int8_onnx is not None:
        models.append(
            TritonModel(
                f"{base}_int8_onnxruntime",
                onnx=cpu_int8_onnx,
                precision="int8",
                model_file=cpu_int8_ort,
                **ort,
            )
        )
    models.append(TritonModel(f"{base}_fp32_onnxruntime", onnx=fp32_onnx, **ort))
    if not gpu and _platform.machine() in ("x86_64", "AMD64"):
        ov_src = cpu_int8_onnx if precision == "int8" and cpu_int8_onnx else fp32_onnx
        models.append(
            TritonModel(
                f"{base}_{precision}_openvino",
                "openvino",
                ov_src,
                precision,
                threads=cpu_threads,
                model_file=openvino_ir,
            )
        )
    if not gpu:
        want = primary or ("openvino" if precision == "bf16" else "onnxruntime")
        models.sort(key=lambda m: not (m.backend == want and m.precision == precision))
    if python:
        p = "int8" if precision == "int8" and cpu_int8_onnx is not None else "fp32"
        src = cpu_int8_onnx if p == "int8" else fp32_onnx
        models.append(TritonModel(f"{base}_{p}_python", "python", src, p, threads=cpu_threads))
    return models


def run_folder_models(
    run_dir: str | Path, base: str | None = None, python: bool = False
) -> tuple[list[TritonModel], dict[str, Any]]:
    """The models of a ``build`` run folder (report.json, deploy.json, engines) and its model
    config (for the ensemble's preprocessing). A TensorRT build serves its engines as built
    (on this GPU); a CPU build serves first the runtime and thread count ``deploy.json``
    chose."""
    run = Path(run_dir)
    try:
        report = json.loads((run / "report.json").read_text())
        model_cfg = report["model"]["config"]
        build = report["build"]
        target = report["target"]
        precision = build["precision"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SwinEdgeError(
            f"'{run}' is not a finished build run folder (report.json); run "
            "`python -m swin_edge build` first"
        ) from None
    base = base or str(build.get("model") or model_cfg["name"])
    fp32 = run / "model.onnx"
    if target == "tensorrt":
        engine = run / f"model.{precision}.engine"
        sources = {"fp16": run / "model.fp16.onnx", "int8": run / "model.int8-tensorrt.onnx"}
        models = deploy_models(
            base,
            precision,
            fp32,
            sources.get(precision),
            target=default_target(),
            engine=engine,
            engine_max_batch=_engine_max_batch(engine),
            python=python,
        )
        return models, model_cfg
    from ..runtime_select import LOWERED, SEVEN_BIT, read_deploy_manifest

    chosen = read_deploy_manifest(run / "deploy.json").chosen
    seven = chosen.variant in SEVEN_BIT  # the 7-bit GEMM-input model won
    qdq = run / ("model.int8-cpu7.onnx" if seven else "model.int8-cpu.onnx")
    lowered = run / "model.int8-cpu.ort.onnx"  # of the deployed Q/DQ model
    ir = run / ("model.int8-cpu.xml" if precision == "int8" else "model.fp32.xml")
    as_written = chosen.runtime == "ort" and chosen.variant not in LOWERED
    models = deploy_models(
        base,
        precision,
        fp32,
        target="cpu",
        cpu_int8_onnx=qdq if precision == "int8" else None,
        cpu_int8_ort=lowered if lowered.is_file() and not as_written else None,
        openvino_ir=ir if chosen.runtime == "openvino" and ir.is_file() else None,
        cpu_threads=chosen.threads,
        primary="openvino" if chosen.runtime == "openvino" else "onnxruntime",
        python=python,
    )
    return models, model_cfg


def _engine_max_batch(engine: Path) -> int | None:
    """The max batch of a swin_edge-built engine's optimization profile (its manifest), None
    for a static-batch engine or when the manifest does not say."""
    try:
        manifest = json.loads(Path(str(engine) + ".json").read_text())
    except (OSError, ValueError):
        return None
    shape = manifest.get("input_shape") or []
    if shape and isinstance(shape[0], int) and shape[0] > 0:
        return None  # static batch: max_batch_size 0
    return (manifest.get("build") or {}).get("max_batch")


def write_deploy_repository(
    out: str | Path,
    *,
    base: str,
    precision: str,
    fp32_onnx: str | Path,
    bundle: str | Path,
    preprocess: Any,
    int8_onnx: str | Path | None = None,
    cpu_int8_onnx: str | Path | None = None,
    target: str | None = None,
    max_batch_size: int = 8,
    queue_delay_us: int = 2000,
    dynamic_batching: bool = True,
    ensemble: bool = True,
    python: bool = False,
) -> RepositoryResult:
    """``deploy --format triton``: the repository for a GPU/Jetson (``target``, default by this
    machine's architecture) whose TensorRT engine ``build_engines.sh`` builds on the device
    from ``bundle`` (:func:`swin_edge.deploy.make_bundle`, made with the same max batch), plus
    ONNX Runtime models (``cpu_int8_onnx``: a cpu-recipe INT8 ONNX for the CPU, lowered here)
    and, with ``ensemble``, the JPEG ensemble on the TensorRT model."""
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as work:
        lowered = None
        if cpu_int8_onnx is not None:
            from ..backends.onnxrt_lowering import lower_file

            lowered = Path(work) / "model.int8-cpu.ort.onnx"
            lower_file(cpu_int8_onnx, lowered)
        models = deploy_models(
            base,
            precision,
            fp32_onnx,
            int8_onnx,
            target=target or default_target(),
            cpu_int8_onnx=cpu_int8_onnx,
            cpu_int8_ort=lowered,
            python=python,
        )
        batching = BatchingConfig(max_batch_size, (), queue_delay_us, dynamic_batching)
        ens = EnsembleConfig(models[0].name, preprocess) if ensemble else None
        return write_repository(
            out, models, batching, ensemble=ens, trt_bundle=bundle, base_name=base
        )


def repository_from_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    max_batch_size: int = 8,
    queue_delay_us: int = 2000,
    dynamic_batching: bool = True,
    ensemble: bool = True,
    python: bool = False,
) -> RepositoryResult:
    """``build --triton REPO``: the repository of a finished build run folder (see
    :func:`run_folder_models`); the ensemble feeds the deployed model."""
    models, model_cfg = run_folder_models(run_dir, python=python)
    base = str(json.loads((Path(run_dir) / "report.json").read_text())["build"]["model"])
    if ":" in base:  # --model file.py:factory: the file's name
        base = Path(base.partition(":")[0]).stem
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)  # Triton model names
    batching = BatchingConfig(max_batch_size, (), queue_delay_us, dynamic_batching)
    ens = EnsembleConfig(models[0].name, model_cfg["preprocess"]) if ensemble else None
    return write_repository(out, models, batching, ensemble=ens, base_name=base)
