"""CPU deployment bundle: the models every CPU runtime can run, ``deploy.json``, and a script
that re-runs the runtime selection on the box that serves (it is rarely the box that built).

Which runtime, variant and thread count is fastest depends on the CPU
(:mod:`~swin_edge.runtime_select`), so the bundle carries the model of every candidate, not
only the one the packing machine chose:

- ``int8``: ``model.int8-cpu.onnx`` (the ``cpu`` recipe's Q/DQ model: ONNX Runtime as written
  or lowered, OpenVINO int8), ``model.int8-openvino.onnx`` (OpenVINO's own NNCF recipe) and
  ``model.int8-cpu7.onnx`` (the ``cpu`` recipe with 7-bit GEMM inputs: a candidate on CPUs whose
  u8s8 kernels clamp, where the fast kernels run it exactly);
- ``fp32`` and ``bf16``: ``model.onnx``;

each but the 7-bit one (an ONNX Runtime candidate only) with OpenVINO IR (``.xml``/``.bin``)
beside it when OpenVINO is installed where it is packed. ``check.npz`` holds a few preprocessed
images and the FP32 model's outputs on them, so the selection also checks what every candidate
computes on the target. ``bundle.json`` lists every file with its sha256. ``select_runtime.sh``
runs :func:`select_bundle` (``python -m swin_edge select-runtime``), which times the candidates
on that box and rewrites ``deploy.json``; :func:`~swin_edge.runtime_select.load_deployed` reads
it to build the runner.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import SwinEdgeError
from .runtime_select import MANIFEST_NAME, MAX_SQNR_DROP_DB, CpuCandidate, Selection
from .utils import atomic_path, read_json_doc, sha256_file

BUNDLE_FORMAT = "swin_edge.cpu-bundle/1"
BUNDLE_NAME = "bundle.json"
CHECK_NAME = "check.npz"
SCRIPT_NAME = "select_runtime.sh"
# The bundle's file for each model a candidate runs, by source (runtime_select's model kinds).
SOURCE_FILES = {
    "fp32": "model.onnx",
    "int8": "model.int8-cpu.onnx",
    "int8-nncf": "model.int8-openvino.onnx",
    "int8-7bit": "model.int8-cpu7.onnx",
}
SOURCES_OF = {"fp32": ("fp32",), "bf16": ("fp32",), "int8": ("int8", "int8-nncf", "int8-7bit")}
NO_IR = ("int8-7bit",)  # sources no OpenVINO candidate runs
CHECK_IMAGES = 8
REEXTRACT = "extract the bundle again, or re-pack it with `python -m swin_edge deploy --target cpu`"

SCRIPT = r"""#!/usr/bin/env bash
# Pick the fastest way to run this bundle's model on THIS machine: time every CPU runtime its
# models can run with (ONNX Runtime as written and lowered, and the 7-bit model where the CPU's
# u8s8 kernels clamp; OpenVINO when installed; 1..all cores) in interleaved rounds, check each
# against the bundled FP32 outputs, and write the choice to deploy.json. Run it once on every
# kind of box that serves the model.
# Usage: ./select_runtime.sh [--runtime ort|openvino] [--threads N] [--rounds R] ...
# PYTHON selects the interpreter (default python3); it needs swin_edge installed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import swin_edge' >/dev/null 2>&1; then
  echo "swin_edge is not importable by $PYTHON: pip install --no-deps swin_edge &&" \
    "pip install numpy onnx onnxruntime openvino (or set PYTHON to an interpreter that has it)" >&2
  exit 2
fi
exec "$PYTHON" -m swin_edge select-runtime . "$@"
"""

README = """# {name}: CPU deployment bundle ({precision})

Packed by swin_edge {version}. {packed}

On the box that serves the model:

    pip install --no-deps swin_edge     # serving needs none of the build tools (torch, NNCF)
    pip install numpy onnx onnxruntime openvino   # OpenVINO optional: else ONNX Runtime only
    ./select_runtime.sh                 # times every candidate here, writes deploy.json

then in Python:

    from swin_edge.runtime_select import load_deployed
    with load_deployed("path/to/this/folder") as runner:
        logits = runner.infer(batch)    # float32 (N, 3, {size}, {size})

`load_deployed` warns when deploy.json was written on another class of CPU: run
`./select_runtime.sh` there (the fastest runtime and thread count depend on the CPU).

Preprocessing: resize the short side to {resize} ({interp}), center-crop {size}, RGB, scale
to [0, 1], normalize mean {mean} std {std}; NCHW float32 input (batch {batch}).

Models: {models}. Files and sha256: `bundle.json`.
"""


@dataclass(frozen=True)
class CpuBundleConfig:
    """Packing settings: ``select`` times the candidates on the packing machine too, so the
    bundle has a ``deploy.json`` before the target re-runs the selection."""

    precision: str = "int8"
    select: bool = True
    rounds: int = 5
    iterations: int = 20  # per round
    warmup: int = 5
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB

    def __post_init__(self) -> None:
        if self.precision not in SOURCES_OF:
            raise SwinEdgeError(
                f"--precision {self.precision!r}: a CPU bundle takes {', '.join(SOURCES_OF)}"
            )


@dataclass
class CpuBundle:
    """A CPU bundle read back and verified: its folder, ``bundle.json`` and source paths."""

    folder: Path
    doc: dict[str, Any]
    sources: dict[str, Path]

    @property
    def precision(self) -> str:
        return self.doc["precision"]


@dataclass
class CpuBundleResult:
    path: Path
    selection: Selection | None  # the packing machine's choice, if it made one
    note: str | None = None  # why it did not


def _add_ir(folder: Path, names: Sequence[str]) -> list[str]:
    """Write OpenVINO IR beside each model when OpenVINO is installed; the IR file names."""
    from .backends.openvino import onnx_to_openvino_ir, openvino_available

    if not openvino_available():
        return []
    out = []
    for name in names:
        xml = onnx_to_openvino_ir(folder / name, (folder / name).with_suffix(".xml"))
        out += [xml.name, xml.with_suffix(".bin").name]
    return out


def make_cpu_bundle(
    out: str | Path,
    fp32_onnx: str | Path,
    model_cfg: Mapping[str, Any],
    check_images: np.ndarray,
    cfg: CpuBundleConfig,
    int8_onnx: str | Path | None = None,
    openvino_int8_onnx: str | Path | None = None,
    calibration_sha256: str | None = None,
    int8_7bit_onnx: str | Path | None = None,
) -> CpuBundleResult:
    """Write the bundle ``out`` (.tar.gz) atomically. ``int8_onnx`` (the ``cpu`` recipe) is
    required for an int8 bundle, ``openvino_int8_onnx`` (OpenVINO's NNCF recipe) and
    ``int8_7bit_onnx`` (the ``cpu`` recipe with 7-bit GEMM inputs) optional;
    ``check_images`` are preprocessed images for the bundled FP32 reference outputs."""
    out = Path(out)
    if not str(out).endswith((".tar.gz", ".tgz")):
        raise SwinEdgeError(f"--out {out}: the bundle is a .tar.gz file")
    given = {
        "fp32": fp32_onnx,
        "int8": int8_onnx,
        "int8-nncf": openvino_int8_onnx,
        "int8-7bit": int8_7bit_onnx,
    }
    if cfg.precision == "int8" and int8_onnx is None:
        raise SwinEdgeError("an int8 CPU bundle needs the cpu-recipe Q/DQ ONNX")
    sources = {s: SOURCE_FILES[s] for s in SOURCES_OF[cfg.precision] if given[s] is not None}
    from .runtime_select import fp32_reference

    with tempfile.TemporaryDirectory(prefix="swin_edge-cpu-bundle-") as work:
        stage = Path(work)
        for source, name in sources.items():
            shutil.copyfile(given[source], stage / name)
        ir_sources = [n for s, n in sources.items() if s not in NO_IR]
        files = [*sources.values(), *_add_ir(stage, ir_sources)]
        check_images, names, ref = fp32_reference(fp32_onnx, check_images[:CHECK_IMAGES])
        np.savez(
            stage / CHECK_NAME,
            input=check_images,
            **{f"output_{i}": o for i, o in enumerate(ref)},
        )
        files.append(CHECK_NAME)
        (stage / SCRIPT_NAME).write_text(SCRIPT)
        (stage / SCRIPT_NAME).chmod(0o755)
        files.append(SCRIPT_NAME)
        from .cpu import cpu_info
        from .runtime_select import deploy_environment

        info = cpu_info()
        doc = {
            "format": BUNDLE_FORMAT,
            "swin_edge": __version__,
            "model": dict(model_cfg),
            "precision": cfg.precision,
            "input_shape": list(check_images.shape[1:]),
            "sources": sources,
            "check": {
                "file": CHECK_NAME,
                "images": len(check_images),
                "outputs": names,
                "reference": "FP32 model, ONNX Runtime",
            },
            "calibration_sha256": calibration_sha256,
            "packed_on": {"cpu": info.to_dict(), "env": deploy_environment()},
            "files": {
                name: {"sha256": sha256_file(stage / name), "bytes": (stage / name).stat().st_size}
                for name in files
            },
        }
        (stage / BUNDLE_NAME).write_text(json.dumps(doc, indent=2))
        selection, note = None, None
        if cfg.select:
            try:
                selection = select_bundle(
                    stage,
                    None,
                    None,
                    cfg.rounds,
                    cfg.iterations,
                    cfg.warmup,
                    cfg.max_sqnr_drop_db,
                )
            except SwinEdgeError as e:  # e.g. bf16 packed on a CPU without BF16
                note = f"no runtime chosen on this machine ({e})"
        pp = model_cfg["preprocess"]
        packed = (
            f"The packing machine ({info.model}, {info.cpu_class}) chose "
            f"`{selection.chosen.key}`; deploy.json lists every candidate's times."
            if selection
            else "No runtime was chosen where it was packed: run `./select_runtime.sh` first."
        )
        readme = README.format(
            name=model_cfg["name"],
            precision=cfg.precision,
            version=__version__,
            packed=packed,
            size=pp["img_size"],
            resize=int(pp["img_size"] / pp["crop_pct"]),
            interp=pp["interpolation"],
            mean=tuple(pp["mean"]),
            std=tuple(pp["std"]),
            batch=_batch_text(stage / next(iter(sources.values()))),
            models=", ".join(f"`{n}` ({s})" for s, n in sources.items()),
        )
        (stage / "README.md").write_text(readme)
        with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(stage.iterdir()):
                if path.name.startswith("."):
                    continue
                tar.add(path, arcname=path.name)
    return CpuBundleResult(out, selection, note)


def _batch_text(onnx_path: Path) -> str:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    dim = next(i for i in graph.input if i.name not in inits).type.tensor_type.shape.dim[0]
    return str(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else "any"


def read_cpu_bundle(folder: str | Path) -> CpuBundle:
    """Read ``bundle.json`` and verify every file it lists (size and sha256): a missing,
    foreign, corrupt or changed bundle is a one-line error."""
    folder = Path(folder)
    path = folder / BUNDLE_NAME
    if not folder.is_dir():
        raise SwinEdgeError(f"'{folder}' is not a folder; extract the CPU bundle (.tar.gz) first")
    if not path.is_file():
        raise SwinEdgeError(
            f"'{folder}' has no {BUNDLE_NAME}, so it is not an extracted CPU bundle; "
            "pack one with `python -m swin_edge deploy --target cpu`"
        )
    doc = read_json_doc(path, BUNDLE_FORMAT, "swin_edge CPU bundle manifest", REEXTRACT)
    try:
        precision = doc["precision"]
        sources = {s: folder / str(n) for s, n in dict(doc["sources"]).items()}
        files = {str(k): dict(v) for k, v in dict(doc["files"]).items()}
        ok = precision in SOURCES_OF and set(sources) <= set(SOURCES_OF[precision])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SwinEdgeError(
            f"'{path}' is malformed ({type(e).__name__}: {e}); {REEXTRACT}"
        ) from None
    if not ok or SOURCES_OF[precision][0] not in sources:
        raise SwinEdgeError(f"'{path}' is malformed (precision {precision!r}); {REEXTRACT}")
    for name, meta in files.items():
        p = folder / name
        if not p.is_file():
            raise SwinEdgeError(f"'{p}' is missing from the bundle; {REEXTRACT}")
        if p.stat().st_size != meta.get("bytes") or sha256_file(p) != meta.get("sha256"):
            raise SwinEdgeError(f"'{p}' differs from the one packed (sha256); {REEXTRACT}")
    for p in sources.values():
        if p.name not in files:
            raise SwinEdgeError(f"'{path}' is malformed ({p.name} is not listed); {REEXTRACT}")
    return CpuBundle(folder, doc, sources)


def _with_ir(c: CpuCandidate) -> CpuCandidate:
    """OpenVINO candidates read the IR beside their ONNX when the bundle has one."""
    xml = Path(c.model).with_suffix(".xml")
    if c.runtime == "openvino" and xml.is_file():
        return dataclasses.replace(c, model=str(xml))
    return c


def _check(folder: Path, doc: dict[str, Any]) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    meta = doc.get("check") or {}
    try:
        with np.load(folder / str(meta.get("file", CHECK_NAME))) as z:
            images = z["input"]
            ref = [z[f"output_{i}"] for i in range(len(meta["outputs"]))]
    except (OSError, KeyError, ValueError) as e:
        raise SwinEdgeError(
            f"'{folder / CHECK_NAME}' is unreadable ({type(e).__name__}); {REEXTRACT}"
        ) from None
    return images, list(meta["outputs"]), ref


def select_bundle(
    folder: str | Path,
    runtime: str | None = None,
    threads: Sequence[int] | None = None,
    rounds: int = 5,
    iterations: int = 20,
    warmup: int = 5,
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB,
) -> Selection:
    """On this machine: verify the bundle, time every candidate for its precision
    (:func:`~swin_edge.runtime_select.measure`), run each on the bundled check images against
    the FP32 outputs (:func:`~swin_edge.runtime_select.check_outputs`: non-finite or
    unfaithful candidates are never chosen), pick the fastest other and rewrite ``deploy.json``
    atomically, recording the choice it replaces."""
    from .cpu import cpu_info
    from .runtime_select import (
        cpu_candidates,
        deploy_environment,
        measure,
        select_checked,
        write_deploy_manifest,
    )

    bundle = read_cpu_bundle(folder)
    src = bundle.sources
    candidates = [
        _with_ir(c)
        for c in cpu_candidates(
            bundle.precision,
            src.get("fp32"),
            src.get("int8"),
            runtime=runtime,
            threads=threads,
            openvino_int8_path=src.get("int8-nncf"),
            int8_7bit_path=src.get("int8-7bit"),
        )
    ]
    images, names, ref = _check(bundle.folder, bundle.doc)
    m = measure(candidates, rounds, iterations, warmup, inputs=images)
    sel = select_checked(
        candidates,
        m,
        images,
        names,
        ref,
        runtime=runtime,
        fp32_path=src.get("fp32"),
        int8_path=src.get("int8"),
        max_sqnr_drop_db=max_sqnr_drop_db,
    )
    manifest = bundle.folder / MANIFEST_NAME
    write_deploy_manifest(
        manifest,
        sel,
        cpu_info(),
        deploy_environment(),
        {"bundle": BUNDLE_NAME, "check_images": len(images), "previous": _previous(manifest)},
    )
    return sel


def _previous(manifest: Path) -> dict[str, Any] | None:
    """The choice and CPU of the ``deploy.json`` about to be replaced, if any."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        return {
            "chosen": doc["chosen"]["key"],
            "cpu_model": doc["cpu"].get("model"),
            "cpu_class": doc["cpu"].get("class"),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
