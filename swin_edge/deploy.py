"""Deployment bundle for a TensorRT device (Jetson or desktop GPU).

Engines are not portable across GPUs and TensorRT versions, so the bundle carries what the
device needs to build its own: FP32 ONNX, FP16 ONNX (LayerNorm/Softmax kept FP32), the
TensorRT-recipe Q/DQ INT8 ONNX (INT8 + FP16), a manifest (model config, preprocessing, hashes,
build settings, trtexec lines) and ``build_engine.sh``, which records the power/clock state
(nvpmodel, jetson_clocks) and builds + benchmarks the engine with swin_edge when it is installed
on the device, else with trtexec. Either way the engine gets its manifest
(``model.<precision>.engine.json``: sha256, TensorRT release, GPU), which swin_edge's runner
checks before loading.

DLA bundles (``dla_core`` set) are static-batch (TensorRT needs min = opt = max on DLA) and put
only the FP16 engine on DLA; ``fp32`` and ``int8`` build on the GPU (INT8 on DLA is refused,
see :mod:`swin_edge.backends.tensorrt_build`). The script passes ``--fp16``/``--stronglyTyped``
only to a trtexec that has them (10.x; 11.x removed weak typing).
"""

from __future__ import annotations

import io
import json
import shlex
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .backends.tensorrt_build import (
    DLA_DYNAMIC_REFUSED,
    TrtBuildConfig,
    check_dla_request,
    onnx_to_fp16,
    trtexec_bench_command,
    trtexec_command,
)
from .errors import SwinEdgeError
from .utils import atomic_path, sha256_file

SCRIPT = r"""#!/usr/bin/env bash
# Build and benchmark the TensorRT engine on this device. Usage: ./build_engine.sh [int8|fp16|fp32]
# Uses swin_edge when it (with tensorrt and pycuda) is importable, else trtexec ($TRTEXEC or
# the one on PATH); SWIN_EDGE_USE_TRTEXEC=1 forces trtexec. Either way the engine gets its
# manifest model.<precision>.engine.json (sha256, TensorRT release, GPU).
set -euo pipefail
cd "$(dirname "$0")"
PRECISION="${1:-__DEFAULT__}"
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
INPUT_SHAPE='__INPUT_SHAPE__'
CALIBRATION='__CALIBRATION__'
mkdir -p logs
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  uname -a
  cat /etc/nv_tegra_release 2>/dev/null || true
  if command -v nvpmodel >/dev/null; then nvpmodel -q; else echo "nvpmodel: not present"; fi
  if command -v jetson_clocks >/dev/null; then jetson_clocks --show;
  else echo "jetson_clocks: not present"; fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.limit --format=csv
  fi
} > "logs/device_state.txt" 2>&1 || true
echo "device state recorded in logs/device_state.txt"
case "$PRECISION" in
__CASES__
  *) echo "unknown precision '$PRECISION' (int8, fp16 or fp32)" >&2; exit 2;;
esac
ENGINE="model.$PRECISION.engine"

json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }

write_manifest() {  # the manifest swin_edge writes, from trtexec's log
  local log="$1" v gpu cc version tmp
  v="$(grep -o 'TensorRT v[0-9]*' "$log" | head -n 1 | tr -dc '0-9')"
  gpu="$(sed -n 's/.*Selected Device: //p' "$log" | head -n 1)"
  cc="$(sed -n 's/.*Compute Capability: //p' "$log" | head -n 1)"
  if [ -z "$v" ] || [ -z "$gpu" ] || [ -z "$cc" ] || [ ! -f "$ENGINE" ]; then
    echo "could not read the TensorRT version and GPU from $log: no manifest written" >&2
    return 1
  fi
  version="$((v / 10000)).$((v / 100 % 100)).$((v % 100))"
  tmp="$ENGINE.json.tmp.$$"
  {
    printf '{\n  "format": "swin_edge.engine/1",\n  "built_by": "trtexec",\n'
    printf '  "engine": %s,\n' "$(json_str "$ENGINE")"
    printf '  "engine_sha256": "%s",\n' "$(sha256sum "$ENGINE" | cut -d ' ' -f 1)"
    printf '  "tensorrt_version": "%s",\n' "$version"
    printf '  "gpu_name": %s,\n' "$(json_str "$gpu")"
    printf '  "compute_capability": %s,\n' "$(json_str "$cc")"
    printf '  "precision": "%s",\n  "label": "%s",\n' "$PRECISION" "$LABEL"
    printf '  "strongly_typed": %s,\n  "dla_core": %s,\n' "$STRONG" "${DLA_CORE:-null}"
    printf '  "input_shape": %s,\n' "$INPUT_SHAPE"
    printf '  "onnx": %s,\n' "$(json_str "$ONNX")"
    printf '  "onnx_sha256": "%s",\n' "$(sha256sum "$ONNX" | cut -d ' ' -f 1)"
    printf '  "calibration_sha256": %s,\n' "$CALIBRATION"
    printf '  "layer_info": %s,\n' "$(json_str "logs/layers_$PRECISION.json")"
    printf '  "trtexec": %s,\n' "$(json_str "trtexec $ARGS")"
    printf '  "trtexec_bench": %s,\n' "$(json_str "trtexec $BENCH")"
    printf '  "created": "%s"\n}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$tmp"
  mv -f "$tmp" "$ENGINE.json"
  echo "wrote $ENGINE.json (TensorRT $version, $gpu, compute capability $cc)"
}

rm -f "$ENGINE.json"  # never leave a manifest that describes an older engine
USE_SWIN_EDGE=0
if [ -z "${SWIN_EDGE_USE_TRTEXEC:-}" ]; then
  python3 -c "import swin_edge, tensorrt, pycuda" 2>/dev/null && USE_SWIN_EDGE=1
fi
if [ "$USE_SWIN_EDGE" = 1 ]; then
  echo "building with swin_edge (engine + manifest, CUDA-event benchmark)"
  # shellcheck disable=SC2086
  python3 -m swin_edge engine "$ONNX" --precision "$PRECISION" --out "$ENGINE" \
    __ENGINE_ARGS__ $ENGINE_DLA 2>&1 | tee "logs/build_$PRECISION.log"
else
  if ! command -v "$TRTEXEC" >/dev/null; then
    echo "trtexec not found (set TRTEXEC=/path/to/trtexec, or install swin_edge[tensorrt])" >&2
    exit 3
  fi
  HELP="$("$TRTEXEC" --help 2>&1 || true)"
  case "$HELP" in  # capability, not version: trtexec 11 removed --fp16/--int8
    *"--fp16 "*) ARGS="$ARGS_WEAK"; STRONG="$STRONG_WEAK";;
    *) ARGS="$ARGS_STRONG"; STRONG=true;;
  esac
  echo "building with trtexec: $TRTEXEC $ARGS"
  eval "\"\$TRTEXEC\" $ARGS" 2>&1 | tee "logs/build_$PRECISION.log"
  write_manifest "logs/build_$PRECISION.log"
  echo "benchmarking: $TRTEXEC $BENCH"
  eval "\"\$TRTEXEC\" $BENCH" 2>&1 | tee "logs/bench_$PRECISION.log"
fi
"""

README = """# swin_edge deployment bundle: {name}

Build the engine on the device itself (engines are tied to the GPU and TensorRT version):

    ./build_engine.sh {default}      # or {others}

{devices}

On Jetson, fix the power mode and clocks first for stable numbers, e.g. `sudo nvpmodel -m 0`
and `sudo jetson_clocks`; the script records both in `logs/device_state.txt`. Each engine gets
a manifest `model.<precision>.engine.json` (sha256, TensorRT release, GPU); swin_edge refuses to
load an engine whose manifest does not match it. With trtexec the per-layer precisions are in
`logs/layers_<precision>.json`.

Preprocessing (the model's own): resize shorter side to {resize} ({interp}), center crop
{size}, RGB, scale to [0, 1], normalize mean {mean} std {std}; NCHW float32 input `input`
({batch}).

Files: see `manifest.json` (sha256 of every file, model config, trtexec lines).
"""


@dataclass(frozen=True)
class DeployConfig:
    """Bundle settings. ``batch``: the static batch of a DLA bundle (others: dynamic batch
    1..``max_batch``)."""

    precision: str = "int8"
    workspace_mb: int = 2048
    optimization_level: int = 3
    max_batch: int = 8
    dla_core: int | None = None
    batch: int = 1

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise SwinEdgeError(f"--precision {self.precision!r}: choose fp32, fp16 or int8")
        if self.batch < 1 or self.max_batch < 1:
            raise SwinEdgeError("--batch and --max-batch must be >= 1")
        check_dla_request(self.dla_core, self.precision, dynamic_batch=False)

    @property
    def dynamic_batch(self) -> bool:
        """DLA needs a static batch; every other bundle exports a dynamic one."""
        return self.dla_core is None


def deploy_export_config(cfg: DeployConfig) -> Any:
    """The :class:`~swin_edge.export.ExportConfig` ``deploy`` must export with: static batch
    ``cfg.batch`` for DLA, dynamic batch otherwise."""
    from .export import ExportConfig

    return ExportConfig(batch_size=cfg.batch, dynamic_batch=cfg.dynamic_batch)


def _onnx_batch(path: str | Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    d0 = inp.type.tensor_type.shape.dim[0]
    return d0.dim_value if d0.HasField("dim_value") and d0.dim_value > 0 else None


def _build_configs(cfg: DeployConfig) -> dict[str, TrtBuildConfig]:
    """Per precision: only FP16 goes on DLA; fp32 and int8 build on the GPU."""
    return {
        p: TrtBuildConfig(
            precision=p,
            workspace_mb=cfg.workspace_mb,
            optimization_level=cfg.optimization_level,
            timing_cache="timing.cache",
            max_batch=cfg.max_batch,
            dla_core=cfg.dla_core if p == "fp16" else None,
        )
        for p in ("fp32", "fp16", "int8")
    }


def _case(precision: str, onnx_name: str, tcfg: TrtBuildConfig, shape: tuple) -> tuple[str, dict]:
    engine = f"model.{precision}.engine"
    layers = f"logs/layers_{precision}.json"
    weak = trtexec_command(onnx_name, engine, tcfg, "input", shape, True, layers)
    strong = trtexec_command(onnx_name, engine, tcfg, "input", shape, False, layers)
    bench = trtexec_bench_command(engine, tcfg, "input", shape, export_layer_info=layers)
    dla = tcfg.dla_core
    fields = {
        "ONNX": onnx_name,
        "LABEL": tcfg.label,
        "DLA_CORE": "" if dla is None else str(dla),
        "ENGINE_DLA": "" if dla is None else f"--dla {dla}",
        "ARGS_WEAK": weak.split(" ", 1)[1],
        "ARGS_STRONG": strong.split(" ", 1)[1],
        "STRONG_WEAK": "false" if dla is not None else "true",
        "BENCH": bench.split(" ", 1)[1],
    }
    body = "; ".join(f"{k}={shlex.quote(v)}" for k, v in fields.items())
    return f"  {precision}) {body};;", {"build_10x": weak, "build_11x": strong, "bench": bench}


def make_bundle(
    out: str | Path,
    fp32_onnx: str | Path,
    int8_onnx: str | Path | None,
    model_cfg: dict,
    cfg: DeployConfig,
    calibration_sha256: str | None = None,
) -> Path:
    """Write ``out`` (.tar.gz) atomically; returns its path. A DLA bundle needs a static-batch
    ONNX (export it with :func:`deploy_export_config`)."""
    out = Path(out)
    if not str(out).endswith((".tar.gz", ".tgz")):
        raise SwinEdgeError(f"--out {out}: the bundle is a .tar.gz file")
    if cfg.precision == "int8" and int8_onnx is None:
        raise SwinEdgeError("an int8 bundle needs the TensorRT-recipe Q/DQ ONNX")
    batch = _onnx_batch(fp32_onnx)
    if cfg.dla_core is not None and batch is None:
        raise SwinEdgeError(f"'{fp32_onnx}' has a dynamic batch: {DLA_DYNAMIC_REFUSED}")
    size = model_cfg["img_size"]
    shape: tuple[int | str, ...] = (batch or "batch", 3, size, size)
    with tempfile.TemporaryDirectory() as work:
        files = {"model.onnx": Path(fp32_onnx)}
        files["model.fp16.onnx"] = onnx_to_fp16(fp32_onnx, Path(work) / "model.fp16.onnx")
        if int8_onnx is not None:
            files["model.int8.onnx"] = Path(int8_onnx)
        sources = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
        commands, cases = {}, []
        for precision, tcfg in _build_configs(cfg).items():
            if sources[precision] not in files:
                continue
            case, commands[precision] = _case(precision, sources[precision], tcfg, shape)
            cases.append(case)
        engine_args = (
            f"--workspace {cfg.workspace_mb} --opt-level {cfg.optimization_level} "
            f"--max-batch {cfg.max_batch} --timing-cache timing.cache"
        )
        script = (
            SCRIPT.replace("__DEFAULT__", cfg.precision)
            .replace("__CASES__", "\n".join(cases))
            .replace("__ENGINE_ARGS__", engine_args)
            .replace("__INPUT_SHAPE__", json.dumps([batch or -1, 3, size, size]))
            .replace("__CALIBRATION__", json.dumps(calibration_sha256))
        )
        pp = model_cfg["preprocess"]
        others = " / ".join(p for p in sources if p != cfg.precision and sources[p] in files)
        devices = (
            f"DLA bundle: `fp16` builds on DLA core {cfg.dla_core} with GPU fallback (static "
            f"batch {batch}); `fp32` and `int8` build on the GPU (INT8 on DLA is not supported)."
            if cfg.dla_core is not None
            else f"Dynamic batch 1..{cfg.max_batch}; benchmarks run at batch 1 (`--shapes`)."
        )
        readme = README.format(
            name=model_cfg["name"],
            default=cfg.precision,
            others=others,
            devices=devices,
            resize=int(pp["img_size"] / pp["crop_pct"]),
            interp=pp["interpolation"],
            size=pp["img_size"],
            mean=tuple(pp["mean"]),
            std=tuple(pp["std"]),
            batch=f"static batch {batch}" if batch else f"batch 1..{cfg.max_batch}",
        )
        manifest = {
            "format": "swin_edge.bundle/1",
            "swin_edge": __version__,
            "model": model_cfg,
            "default_precision": cfg.precision,
            "input_shape": list(shape),
            "files": {
                name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                for name, p in files.items()
            },
            "calibration_sha256": calibration_sha256,
            "deploy": asdict(cfg),
            "devices": {
                p: ("DLA" if t.dla_core is not None else "GPU")
                for p, t in _build_configs(cfg).items()
                if sources[p] in files
            },
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
