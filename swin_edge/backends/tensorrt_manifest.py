"""Engine manifests (``<engine>.json``): what built an engine, for which GPU, and its hash.

Engines are tied to the GPU and TensorRT release that built them. Loading checks the engine
file's sha256 against the manifest (a stale manifest beside a rebuilt engine is refused), the
TensorRT release (``10.13.3.9.post1`` and ``10.13.3.9`` are the same libraries) and the GPU.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError
from ..utils import sha256_file
from .tensorrt_compat import import_cuda, same_release

FORMAT = "swin_edge.engine/1"


def gpu_info() -> dict[str, Any]:
    """Name and compute capability of CUDA device 0 (pycuda)."""
    cuda = import_cuda()
    cuda.init()
    if cuda.Device.count() == 0:
        raise SwinEdgeError("no CUDA GPU found; TensorRT engines need an NVIDIA GPU")
    dev = cuda.Device(0)
    major, minor = dev.compute_capability()
    return {"gpu_name": dev.name(), "compute_capability": f"{major}.{minor}"}


def manifest_path(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + ".json")


def make_manifest(
    *,
    onnx_path: str | Path,
    engine_path: str | Path,
    cfg: Any,
    trt_version: str,
    gpu: dict[str, Any],
    input_shape: list,
    calibration_sha256: str | None,
    build_seconds: float,
    strongly_typed: bool = True,
    layers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a freshly built engine (``cfg``: a TrtBuildConfig)."""
    return {
        "format": FORMAT,
        "built_by": "swin_edge",
        "engine": Path(engine_path).name,
        "engine_sha256": sha256_file(engine_path),
        "tensorrt_version": trt_version,
        "gpu_name": gpu["gpu_name"],
        "compute_capability": gpu["compute_capability"],
        "precision": cfg.precision,
        "label": cfg.label,
        "strongly_typed": strongly_typed,
        "dla_core": cfg.dla_core,
        "input_shape": input_shape,
        "onnx": Path(onnx_path).name,
        "onnx_sha256": sha256_file(onnx_path),
        "calibration_sha256": calibration_sha256,
        "build": asdict(cfg) if is_dataclass(cfg) else dict(cfg),
        "build_seconds": round(build_seconds, 1),
        "layers": layers,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def check_manifest(
    manifest: dict[str, Any], trt_version: str, gpu: dict[str, Any], engine_path: str | Path
) -> None:
    """Refuse an engine that is not the one its manifest describes, or that was built by
    another TensorRT release or for another GPU."""
    engine_path = Path(engine_path)
    want = manifest.get("engine_sha256")
    if not want:
        raise SwinEdgeError(
            f"manifest '{manifest_path(engine_path).name}' has no engine_sha256; rebuild the "
            "engine with swin_edge or the bundle's build_engine.sh"
        )
    if sha256_file(engine_path) != want:
        raise SwinEdgeError(
            f"engine '{engine_path}' does not match its manifest (sha256 differs: the engine was "
            "rebuilt or changed after the manifest was written); rebuild it with swin_edge or "
            "the bundle's build_engine.sh"
        )
    problems = []
    built = str(manifest.get("tensorrt_version"))
    try:
        same = same_release(built, trt_version)
    except ValueError:
        same = False
    if not same:
        problems.append(f"TensorRT {built} (running {trt_version})")
    if manifest.get("compute_capability") != gpu["compute_capability"]:
        problems.append(
            f"compute capability {manifest.get('compute_capability')} "
            f"(this GPU: {gpu['compute_capability']})"
        )
    if manifest.get("gpu_name") != gpu["gpu_name"]:
        problems.append(f"GPU '{manifest.get('gpu_name')}' (this GPU: '{gpu['gpu_name']}')")
    if problems:
        raise SwinEdgeError(
            f"engine '{engine_path}' was built for "
            + ", ".join(problems)
            + "; engines are not portable: rebuild it on this device from the ONNX "
            "(python -m swin_edge build, or the bundle's build_engine.sh)"
        )


def read_manifest(engine_path: str | Path) -> dict[str, Any]:
    path = manifest_path(engine_path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise SwinEdgeError(
            f"engine '{engine_path}' has no manifest '{path.name}'; rebuild "
            "it with swin_edge so its TensorRT/GPU can be checked"
        ) from None
    except json.JSONDecodeError:
        raise SwinEdgeError(f"manifest '{path}' is not valid JSON; rebuild the engine") from None
    if not isinstance(manifest, dict):
        raise SwinEdgeError(f"manifest '{path}' is not a JSON object; rebuild the engine")
    return manifest


__all__ = [
    "FORMAT",
    "check_manifest",
    "gpu_info",
    "make_manifest",
    "manifest_path",
    "read_manifest",
]
