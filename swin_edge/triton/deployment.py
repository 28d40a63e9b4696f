"""Which Triton models a deployment serves: ``deploy --format triton`` (a GPU/Jetson
repository whose engines the device builds, plus CPU models) and ``build --triton`` (the models
of a finished run folder, the runtime and threads ``deploy.json`` chose first).
"""

from __future__ import annotations

import json
import platform as _platform
import re
from pathlib import Path
from typing import Any

from ..errors import SwinEdgeError
from .plan import TARGETS, BatchingConfig, EnsembleConfig, TritonModel
from .repository import RepositoryResult, write_repository


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
    cpu_int8_7bit: tuple[str | Path, str | Path | None] | None = None,
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
    file, when given; ``cpu_int8_7bit``, (the same model with 7-bit GEMM inputs, its lowered
    file or None), adds ``<base>_int8_onnxruntime_7bit`` for x86 servers without VNNI/AMX,
    where Triton's ONNX Runtime clamps the 8-bit model). cpu: those CPU models and, on x86,
    OpenVINO for ``precision``
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
    if cpu_int8_7bit is not None:
        seven, seven_ort = cpu_int8_7bit
        models.append(
            TritonModel(
                f"{base}_int8_onnxruntime_7bit",
                onnx=seven,
                precision="int8",
                model_file=seven_ort,
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
    run_dir: str | Path,
    base: str | None = None,
    python: bool = False,
    work: str | Path | None = None,
) -> tuple[list[TritonModel], dict[str, Any]]:
    """The models of a ``build`` run folder (report.json, deploy.json, engines) and its model
    config (for the ensemble's preprocessing). A TensorRT build serves its engines as built
    (on this GPU); a CPU build serves first the runtime and thread count ``deploy.json``
    chose. Where an 8-bit int8 model was chosen, ``work`` (a folder that outlives the
    models) gets its 7-bit GEMM-input twin for x86 servers without VNNI/AMX."""
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
    twin = None
    if precision == "int8" and not seven and work is not None:
        twin = _seven_bit_twin(qdq, Path(work), lowered=not as_written)
    models = deploy_models(
        base,
        precision,
        fp32,
        target="cpu",
        cpu_int8_onnx=qdq if precision == "int8" else None,
        cpu_int8_ort=lowered if lowered.is_file() and not as_written else None,
        cpu_int8_7bit=twin,
        openvino_ir=ir if chosen.runtime == "openvino" and ir.is_file() else None,
        cpu_threads=chosen.threads,
        primary="openvino" if chosen.runtime == "openvino" else "onnxruntime",
        python=python,
    )
    return models, model_cfg


def _seven_bit_twin(qdq: Path, work: Path, lowered: bool) -> tuple[Path, Path | None] | None:
    """``qdq`` with 7-bit GEMM inputs in ``work`` (and its lowered file when ``lowered``), or
    None when the pass refuses the model."""
    from ..backends.onnxrt_lowering import lower_file
    from ..quantize.u8s8_safe import seven_bit_candidate

    seven, _ = seven_bit_candidate(qdq, work / "model.int8-cpu7.onnx")
    if seven is None:
        return None
    if not lowered:
        return seven, None
    lower_file(seven, work / "model.int8-cpu7.ort.onnx")
    return seven, work / "model.int8-cpu7.ort.onnx"


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
    cpu_int8_7bit_onnx: str | Path | None = None,
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
    ONNX Runtime models (``cpu_int8_onnx``: a cpu-recipe INT8 ONNX for the CPU, and
    ``cpu_int8_7bit_onnx``, the same with 7-bit GEMM inputs; both lowered here) and, with
    ``ensemble``, the JPEG ensemble on the TensorRT model."""
    from tempfile import TemporaryDirectory

    from ..backends.onnxrt_lowering import lower_file

    with TemporaryDirectory() as work:
        lowered, seven = None, None
        if cpu_int8_onnx is not None:
            lowered = Path(work) / "model.int8-cpu.ort.onnx"
            lower_file(cpu_int8_onnx, lowered)
        if cpu_int8_7bit_onnx is not None:
            seven = (cpu_int8_7bit_onnx, Path(work) / "model.int8-cpu7.ort.onnx")
            lower_file(*seven)
        models = deploy_models(
            base,
            precision,
            fp32_onnx,
            int8_onnx,
            target=target or default_target(),
            cpu_int8_onnx=cpu_int8_onnx,
            cpu_int8_ort=lowered,
            cpu_int8_7bit=seven,
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
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as work:
        models, model_cfg = run_folder_models(run_dir, python=python, work=work)
        base = str(json.loads((Path(run_dir) / "report.json").read_text())["build"]["model"])
        if ":" in base:  # --model file.py:factory: the file's name
            base = Path(base.partition(":")[0]).stem
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)  # Triton model names
        batching = BatchingConfig(max_batch_size, (), queue_delay_us, dynamic_batching)
        ens = EnsembleConfig(models[0].name, model_cfg["preprocess"]) if ensemble else None
        return write_repository(out, models, batching, ensemble=ens, base_name=base)
