"""Deployment bundle for a TensorRT device (Jetson or desktop GPU).

Engines are not portable across GPUs and TensorRT versions, so the bundle carries what the
device needs to build its own: FP32 ONNX, FP16 ONNX (LayerNorm/Softmax kept FP32), the
TensorRT-recipe Q/DQ INT8 ONNX, a manifest (model config, preprocessing, hashes, build
settings, trtexec lines) and ``build_engine.sh``, which records the power/clock state
(nvpmodel, jetson_clocks) and builds + benchmarks the engine with trtexec, or with swin_edge
itself when it is installed on the device.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__
from .backends.tensorrt import TrtBuildConfig, onnx_to_fp16, trtexec_command
from .errors import SwinEdgeError
from .utils import atomic_path, sha256_file

SCRIPT = """#!/usr/bin/env bash
# Build and benchmark the TensorRT engine on this device. Usage: ./build_engine.sh [int8|fp16|fp32]
set -euo pipefail
cd "$(dirname "$0")"
PRECISION="${{1:-{default}}}"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
mkdir -p logs
{{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  uname -a
  cat /etc/nv_tegra_release 2>/dev/null || true
  if command -v nvpmodel >/dev/null; then nvpmodel -q; else echo "nvpmodel: not present"; fi
  if command -v jetson_clocks >/dev/null; then jetson_clocks --show;
  else echo "jetson_clocks: not present"; fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv
  fi
}} > "logs/device_state.txt" 2>&1 || true
echo "device state recorded in logs/device_state.txt"
case "$PRECISION" in
{cases}
  *) echo "unknown precision '$PRECISION' (int8, fp16 or fp32)" >&2; exit 2;;
esac
if python3 -c "import swin_edge, tensorrt, pycuda" 2>/dev/null; then
  echo "building with swin_edge (engine + manifest, CUDA-event benchmark)"
  python3 -m swin_edge engine "$ONNX" --precision "$PRECISION" --out "model.$PRECISION.engine" \\
    {engine_args} 2>&1 | tee "logs/build_$PRECISION.log"
else
  echo "building with trtexec: $TRTEXEC"
  eval "${{TRTEXEC}} ${{ARGS}}" 2>&1 | tee "logs/build_$PRECISION.log"
  "$TRTEXEC" --loadEngine="model.$PRECISION.engine" --warmUp=500 --iterations=200 \\
    --avgRuns=50 2>&1 | tee "logs/bench_$PRECISION.log"
fi
"""

README = """# swin_edge deployment bundle: {name}

Build the engine on the device itself (engines are tied to the GPU and TensorRT version):

    ./build_engine.sh {default}      # or fp16 / fp32

On Jetson, fix the power mode and clocks first for stable numbers, e.g. `sudo nvpmodel -m 0`
and `sudo jetson_clocks`; the script records both in `logs/device_state.txt`.

Preprocessing (the model's own): resize shorter side to {resize} ({interp}), center crop
{size}, RGB, scale to [0, 1], normalize mean {mean} std {std}; NCHW float32 input `input`.

Files: see `manifest.json` (sha256 of every file, model config, trtexec lines).
"""


@dataclass(frozen=True)
class DeployConfig:
    precision: str = "int8"
    workspace_mb: int = 2048
    optimization_level: int = 3
    max_batch: int = 8
    dla_core: int | None = None


def make_bundle(
    out: str | Path,
    fp32_onnx: str | Path,
    int8_onnx: str | Path | None,
    model_cfg: dict,
    cfg: DeployConfig,
    calibration_sha256: str | None = None,
) -> Path:
    """Write ``out`` (.tar.gz) atomically; returns its path."""
    out = Path(out)
    if not str(out).endswith((".tar.gz", ".tgz")):
        raise SwinEdgeError(f"--out {out}: the bundle is a .tar.gz file")
    if cfg.precision == "int8" and int8_onnx is None:
        raise SwinEdgeError("an int8 bundle needs the TensorRT-recipe Q/DQ ONNX")
    with tempfile.TemporaryDirectory() as work:
        files = {"model.onnx": Path(fp32_onnx)}
        files["model.fp16.onnx"] = onnx_to_fp16(fp32_onnx, Path(work) / "model.fp16.onnx")
        if int8_onnx is not None:
            files["model.int8.onnx"] = Path(int8_onnx)
        sources = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
        commands, cases = {}, []
        shape = ("batch", 3, model_cfg["img_size"], model_cfg["img_size"])
        for precision, onnx_name in sources.items():
            if onnx_name not in files:
                continue
            tcfg = TrtBuildConfig(
                precision=precision,
                workspace_mb=cfg.workspace_mb,
                optimization_level=cfg.optimization_level,
                timing_cache="timing.cache",
                max_batch=cfg.max_batch,
                dla_core=cfg.dla_core if precision != "fp32" else None,
            )
            cmd = trtexec_command(onnx_name, f"model.{precision}.engine", tcfg, "input", shape)
            commands[precision] = cmd
            args = cmd.split(" ", 1)[1]
            cases.append(f"  {precision}) ONNX=\"{onnx_name}\"; ARGS='{args}';;")
        engine_args = (
            f"--workspace {cfg.workspace_mb} --opt-level {cfg.optimization_level} "
            f"--max-batch {cfg.max_batch}"
            + (f" --dla {cfg.dla_core}" if cfg.dla_core is not None else "")
        )
        script = SCRIPT.format(
            default=cfg.precision, cases="\n".join(cases), engine_args=engine_args
        )
        pp = model_cfg["preprocess"]
        readme = README.format(
            name=model_cfg["name"],
            default=cfg.precision,
            resize=int(pp["img_size"] / pp["crop_pct"]),
            interp=pp["interpolation"],
            size=pp["img_size"],
            mean=tuple(pp["mean"]),
            std=tuple(pp["std"]),
        )
        manifest = {
            "format": "swin_edge.bundle/1",
            "swin_edge": __version__,
            "model": model_cfg,
            "default_precision": cfg.precision,
            "files": {
                name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                for name, p in files.items()
            },
            "calibration_sha256": calibration_sha256,
            "deploy": asdict(cfg),
            "trtexec": commands,
        }
        with atomic_path(out) as tmp, tarfile.open(tmp, "w:gz") as tar:
            for name, path in files.items():
                tar.add(path, arcname=name)
            for name, text, mode in (
                ("manifest.json", json.dumps(manifest, indent=2), 0o644),
                ("build_engine.sh", script, 0o755),
                ("README.md", readme, 0o644),
            ):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
    return out
