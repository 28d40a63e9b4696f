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
ONNX it serves before anything is written (:mod:`.plan`); the repository is built in a staging
folder beside ``REPO`` and swapped in whole, so a failure leaves no partial or invalid
repository. :mod:`.deployment` picks the models ``deploy`` and ``build`` serve.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from .model_config import check_config, check_ensemble, parse_config
from .plan import BatchingConfig, EnsembleConfig, TritonModel, plan_repository

FORMAT = "swin_edge.triton-repository/1"


@dataclass
class RepositoryResult:
    """What was written: the repository, its model names, and TensorRT models whose engine
    ``build_engines.sh`` must still build on the device."""

    path: Path
    models: list[str]
    pending_engines: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)


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
(`scripts/u8s8_saturation.py` in swin_edge prints how much for this model); with VNNI or AMX
the kernels are exact.
{fix}.
"""
U8S8_FIX_7BIT = (
    "Serve `{seven}` on such a CPU: the same calibration with GEMM inputs on 128 levels, exact\n"
    "there with the fast kernels (on a VNNI/AMX CPU 2.4-3.6 dB SQNR below the 8-bit model in\n"
    "swin_edge's measurements)"
)
U8S8_FIX = (
    "Serve the Python-backend model on such a CPU, or quantize with `--gemm-input-bits 7`\n"
    "(exact there with the fast kernels, in ONNX Runtime and OpenVINO)"
)


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
        u8s8=_u8s8_note(res_models, cpu_int8_ort),
    )


def _u8s8_note(res_models: dict[str, Any], eight_bit: list[str]) -> str:
    """The README's warning for the 8-bit CPU ONNX Runtime model, naming its 7-bit twin when
    the repository has one."""
    if not eight_bit:
        return ""
    seven = [
        n
        for n, m in res_models.items()
        if m["backend"] == "onnxruntime_onnx" and m.get("gemm_input_bits") == 7
    ]
    fix = U8S8_FIX_7BIT.format(seven=seven[0]) if seven else U8S8_FIX
    return U8S8_NOTE.format(name=eight_bit[0], fix=fix)


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
