"""``build``: export -> quantize -> engine -> evaluate -> report, in one run folder."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import SwinEdgeError
from .runtime_select import LOWERED, MAX_SQNR_DROP_DB, SEVEN_BIT

STAGES = ("export", "calibrate", "quantize", "engine", "evaluate", "report")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``python -m swin_edge build`` takes; defaults work offline on a fresh machine."""

    precision: str = "int8"
    target: str = "auto"
    model: str = "swin_tiny"
    checkpoint: str | None = None
    img_size: int | None = None
    window_size: int | None = None
    num_classes: int | None = None
    calib_dir: str | None = None
    eval_dir: str | None = None
    num_calib: int = 300
    num_eval: int = 300
    engine: str = "ort"
    calibration: str = "minmax"
    keep_float: tuple[str, ...] = ()
    gemm_input_bits: int = 8  # cpu recipe: 7 for exact fast kernels on x86 without VNNI
    out: str | None = None
    batch: int = 1
    dynamic_batch: bool = False
    threads: int = 0
    iterations: int = 50
    warmup: int = 10
    rounds: int = 5
    worst_layers: int = 5
    workspace_mb: int = 2048
    optimization_level: int = 3
    dla_core: int | None = None
    runtime: str | None = None  # CPU: pin ort | openvino instead of timing both
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB  # CPU selection's fidelity rule
    onnx: str | None = None  # start from this FP32 ONNX instead of exporting `model`
    model_args: tuple[str, ...] = ()  # KEY=VALUE for a `file.py:factory` model
    mean: tuple[float, float, float] | None = None  # preprocessing over the model's own
    std: tuple[float, float, float] | None = None
    resize: int | None = None
    crop: int | None = None
    interpolation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_args", tuple(self.model_args))
        if self.precision not in PRECISIONS:
            raise SwinEdgeError(
                f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}"
            )
        if self.runtime not in (None, "ort", "openvino"):
            raise SwinEdgeError(f"--runtime {self.runtime!r}: choose ort or openvino")
        if self.target not in ("auto", "cpu", "tensorrt"):
            raise SwinEdgeError(f"--target {self.target!r}: choose auto, cpu or tensorrt")
        if self.iterations < 1 or self.warmup < 0:
            raise SwinEdgeError("--iterations must be >= 1 and --warmup >= 0")
        if self.rounds < 1:
            raise SwinEdgeError(f"--rounds {self.rounds}: use at least 1 (at most --iterations)")
        if self.onnx is not None:
            given = [
                option
                for option, value in (
                    ("--model", self.model != "swin_tiny"),
                    ("--checkpoint", self.checkpoint),
                    ("--img-size", self.img_size),
                    ("--window-size", self.window_size),
                    ("--num-classes", self.num_classes),
                    ("--model-arg", self.model_args),
                    ("--dynamic-batch", self.dynamic_batch),
                )
                if value
            ]
            if given:
                raise SwinEdgeError(
                    f"--onnx starts from '{self.onnx}' as it is; drop {', '.join(given)} "
                    "(they describe a model to export)"
                )

    @property
    def run_name(self) -> str:
        """``swin_tiny``, ``file.factory`` for ``file.py:factory``, the stem of ``--onnx``."""
        from .model_ref import parse_model_ref

        if self.onnx is not None:
            return Path(self.onnx).stem
        ref = parse_model_ref(self.model)
        return f"{ref.path.stem}.{ref.factory}" if ref else self.model

    @property
    def out_dir(self) -> Path:
        return Path(self.out or f"runs/{self.run_name}-{self.precision}")

    def preprocess_flags(self) -> Any:
        """The --mean/--std/--resize/--crop/--interpolation given, as PreprocessFlags."""
        from .model import PreprocessFlags

        return PreprocessFlags(self.mean, self.std, self.resize, self.crop, self.interpolation)


@dataclass
class BuildResult:
    out_dir: Path
    target: str
    artifacts: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def resolve_target(target: str, precision: str) -> str:
    from .backends.tensorrt import tensorrt_available

    if target == "auto":
        target = "tensorrt" if tensorrt_available() else "cpu"
    if target == "tensorrt":
        from .backends.tensorrt import import_tensorrt

        import_tensorrt()  # a clear error naming the fix when it is missing
    if target == "cpu" and precision == "fp16":
        raise SwinEdgeError(
            "--precision fp16 needs TensorRT (--target tensorrt); on the CPU use fp32, bf16 or int8"
        )
    if target == "tensorrt" and precision == "bf16":
        raise SwinEdgeError(
            "--precision bf16 is a CPU precision (OpenVINO on AMX/AVX512-BF16); on TensorRT "
            "use fp16 or int8, or pass --target cpu"
        )
    return target


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(
        total=len(STAGES),
        desc="build",
        unit="stage",
        disable=not enabled,
        file=sys.stderr,
        bar_format="{desc}: {n}/{total} {bar} [{elapsed}] {postfix}",
    )
    try:
        yield bar
    finally:
        bar.close()


def build(cfg: BuildConfig, progress: bool = True) -> BuildResult:
    """Run the pipeline into ``cfg.out_dir``: every input is checked before any work, and the
    run folder is replaced whole at the end (see :mod:`~swin_edge.run_folder`)."""
    from .calibration import load_images
    from .run_folder import check_run_folder, staged_run_folder

    check_run_folder(cfg.out_dir)
    target = resolve_target(cfg.target, cfg.precision)
    if cfg.gemm_input_bits != 8 and (target != "cpu" or cfg.precision != "int8"):
        raise SwinEdgeError("--gemm-input-bits 7 is for --precision int8 --target cpu")
    if target == "cpu":  # bf16 without BF16 hardware, a pinned runtime that is missing, ...
        from .runtime_select import cpu_candidates

        cpu_candidates(cfg.precision, "model.onnx", "model.int8.onnx", runtime=cfg.runtime)
    model, cfg = _load_model(cfg)
    pp = model.cfg.preprocess
    # Image folders are read before the slow steps: a bad one fails in seconds.
    eval_set = load_images(cfg.eval_dir, pp, cfg.num_eval)
    calib = load_images(cfg.calib_dir, pp, cfg.num_calib) if cfg.precision == "int8" else None
    with staged_run_folder(cfg.out_dir) as stage:
        cache = cfg.out_dir / "timing.cache"
        if target == "tensorrt" and cache.is_file():  # TensorRT's timings carry over
            shutil.copy2(cache, stage / cache.name)
        res = _build_into(stage, cfg, target, model, eval_set, calib, progress)
    final = cfg.out_dir
    res.out_dir = final
    res.artifacts = {k: str(final / Path(v).name) for k, v in res.artifacts.items()}
    return res


def _load_model(cfg: BuildConfig) -> tuple[Any, BuildConfig]:
    """The model to build: a built-in variant, a user's ``file.py:factory`` model or an
    existing ONNX (``--onnx``: its static batch becomes the build's batch)."""
    from .model import load_model

    if cfg.onnx is None:
        model = load_model(
            cfg.model,
            checkpoint=cfg.checkpoint,
            img_size=cfg.img_size,
            window_size=cfg.window_size,
            num_classes=cfg.num_classes,
            model_args=cfg.model_args,
            preprocess=cfg.preprocess_flags(),
        )
        return model, cfg
    from .export.onnx_import import load_onnx_model

    model = load_onnx_model(cfg.onnx, cfg.preprocess_flags())
    if model.batch is not None and model.batch != cfg.batch:
        if cfg.batch != 1:
            raise SwinEdgeError(
                f"--batch {cfg.batch}: '{cfg.onnx}' has a static batch of {model.batch}; drop "
                "--batch (the ONNX decides it)"
            )
        cfg = replace(cfg, batch=model.batch)
    return model, cfg


def _build_into(
    out: Path, cfg: BuildConfig, target: str, model, eval_set, calib, progress: bool
) -> BuildResult:
    from .bench import environment
    from .evaluate import Candidate, evaluate
    from .export import ExportConfig, torch_to_onnx
    from .export.onnx_import import OnnxModel, import_onnx
    from .model import SwinTransformer
    from .utils import sha256_file

    res = BuildResult(out, target)
    notes = []
    if cfg.checkpoint is None and isinstance(model, SwinTransformer):
        notes.append(
            "no --checkpoint given: random weights, so accuracy figures are only "
            "fidelity to FP32; pass a Microsoft/timm/torchvision checkpoint"
        )
    if calib is not None and calib.skipped:
        notes.append(f"{len(calib.skipped)} calibration files skipped (see log)")
    with _progress(progress) as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        bar.set_postfix_str("export")
        if isinstance(model, OnnxModel):  # --onnx: copied in with its config as metadata
            fp32 = import_onnx(model, out / "model.onnx")
            if not fp32.lint.ok:
                notes.append(f"the linter on '{cfg.onnx}': {fp32.lint.summary()}")
        else:
            fp32 = torch_to_onnx(
                model,
                out / "model.onnx",
                ExportConfig(batch_size=cfg.batch, dynamic_batch=cfg.dynamic_batch),
            )
        res.artifacts["onnx_fp32"] = str(fp32.path)
        step("calibrate")
        step("quantize")
        int8_path = None
        recipe = None
        placement = None
        if cfg.precision == "int8":
            import onnx

            from .quantize import QuantRecipe, quantize_onnx

            recipe = QuantRecipe(
                target="tensorrt" if target == "tensorrt" else "cpu",
                engine=cfg.engine,
                calibration=cfg.calibration,
                keep_float=cfg.keep_float,
                gemm_input_bits=cfg.gemm_input_bits,
            )
            int8_path = out / f"model.int8-{recipe.target}.onnx"
            qres = quantize_onnx(fp32.path, int8_path, calib.images, recipe)
            graph = onnx.load(str(fp32.path), load_external_data=False).graph
            placement = qres.placement({n.name: n.op_type for n in graph.node})
            res.artifacts["onnx_int8"] = str(int8_path)
        step("engine")
        cands = [Candidate("onnxruntime-fp32", "onnxruntime", "fp32", fp32.path)]
        selection, chosen_name = None, None
        if target == "tensorrt":
            cands += _engines(cfg, out, fp32.path, int8_path, calib.digest if calib else None, res)
        else:
            bar.set_postfix_str("select CPU runtime")
            selection = _select_cpu_runtime(
                cfg, out, fp32.path, int8_path, calib, eval_set.images[:8], res, notes
            )
            chosen = selection.chosen
            if chosen.variant in LOWERED:  # the lowering won: the deployed model, as a file
                from .backends.onnxrt_lowering import lower_file

                ort_path = out / "model.int8-cpu.ort.onnx"
                lower_file(chosen.model, ort_path)
                res.artifacts["onnx_int8_ort"] = str(ort_path)
            if chosen.variant in SEVEN_BIT:  # the recipe it deployed
                recipe = replace(recipe, gemm_input_bits=7)
            if not (chosen.runtime == "ort" and cfg.precision == "fp32"):
                backend = "onnxruntime" if chosen.runtime == "ort" else "openvino"
                chosen_name = f"{backend}-{cfg.precision}"
                cands.append(
                    Candidate(
                        chosen_name,
                        backend,
                        cfg.precision,
                        Path(chosen.model),
                        {"target": "openvino", "engine": "nncf", "preset": "mixed"}
                        if chosen.variant == "int8-nncf"
                        else asdict(recipe)
                        if recipe
                        else None,
                    )
                )
        step("evaluate")
        evals = evaluate(
            cands,
            eval_set.images,
            eval_set.labels,
            _runner_factory(cfg, selection, chosen_name),
            cfg.iterations,
            cfg.warmup,
            rounds=cfg.rounds,
        )
        if int8_path is not None and cfg.worst_layers:
            from .layerwise import per_layer_sqnr

            # the deployed model in the deployed runtime (OpenVINO's recipe when it won)
            runtime, test = "ort", int8_path
            if selection is not None and selection.chosen.runtime == "openvino":
                runtime = "openvino"
                if selection.chosen.variant == "int8-nncf":
                    test = Path(res.artifacts["onnx_int8_openvino"])
            elif selection is not None and selection.chosen.variant in SEVEN_BIT:
                test = Path(selection.chosen.model)
            worst = per_layer_sqnr(
                fp32.path, test, eval_set.images[:8], cfg.threads, runtime=runtime
            )
            evals[-1].worst_layers = worst[: cfg.worst_layers]
        for e in evals:  # paths inside the run folder, which is staged and moved at the end
            e.path = Path(e.path).name
        step("report")
        from .report import write_report

        res.report = {
            "swin_edge": __version__,
            "model": {
                "name": model.cfg.name,
                "config": model.cfg.to_dict(),
                "checkpoint": cfg.checkpoint,
                "input_shape": [cfg.batch, 3, model.cfg.img_size, model.cfg.img_size],
            },
            "target": target,
            "build": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "data": {
                "source": str(cfg.eval_dir or "bundled calibration photos"),
                "count": len(eval_set),
                "labeled": eval_set.labels is not None,
                "classes": eval_set.class_names,
            },
            "calibration": (
                {
                    "count": len(calib),
                    "sha256": calib.digest,
                    "source": str(cfg.calib_dir or "bundled calibration photos"),
                }
                if calib
                else None
            ),
            "artifacts": {
                k: {"file": Path(v).name, "sha256": sha256_file(v)}
                for k, v in res.artifacts.items()
            },
            "results": [e.to_dict() for e in evals],
            "quantization": placement,
            "runtime_selection": (
                json.loads((out / "deploy.json").read_text()) if selection else None
            ),
            "environment": environment(),
            "notes": notes,
        }
        paths = write_report(res.report, out)
        res.artifacts.update({f"report_{k}": str(v) for k, v in paths.items()})
        bar.update(1)
    return res


def _engines(
    cfg: BuildConfig,
    out: Path,
    fp32: Path,
    int8: Path | None,
    calib_sha: str | None,
    res: BuildResult,
) -> list:
    from .backends.tensorrt import TrtBuildConfig, onnx_to_engine, onnx_to_fp16
    from .evaluate import Candidate

    cands = []
    sources = {"fp32": fp32}
    if cfg.precision == "fp16":
        sources["fp16"] = onnx_to_fp16(fp32, out / "model.fp16.onnx")
    if cfg.precision == "int8" and int8 is not None:
        sources["int8"] = int8
    for precision, src in sources.items():
        tcfg = TrtBuildConfig(
            precision=precision,
            workspace_mb=cfg.workspace_mb,
            optimization_level=cfg.optimization_level,
            timing_cache=str(out / "timing.cache"),
            opt_batch=cfg.batch,
            max_batch=max(cfg.batch, 8),
            dla_core=cfg.dla_core if precision == "fp16" else None,  # DLA runs FP16 only
        )
        engine = out / f"model.{precision}.engine"
        manifest = onnx_to_engine(src, engine, tcfg, calib_sha if precision == "int8" else None)
        res.artifacts[f"engine_{precision}"] = str(engine)
        label = manifest.get("label", tcfg.label)  # "fp32" engines are built with TF32 off
        cands.append(
            Candidate(
                f"tensorrt-{label}",
                "tensorrt",
                precision,
                engine,
                {"engine_layers": manifest.get("layers"), "dla_core": tcfg.dla_core},
            )
        )
    return cands


def _select_cpu_runtime(
    cfg: BuildConfig,
    out: Path,
    fp32: Path,
    int8: Path | None,
    calib,
    check_images: np.ndarray,
    res: BuildResult,
    notes: list,
):
    """Time every CPU runtime/variant/thread count for the precision asked for (interleaved
    rounds, as TensorRT times tactics), check each on ``check_images`` against FP32, keep the
    fastest faithful one, write ``deploy.json``; where the CPU has hardware BF16 and the
    precision is not bf16, say what bf16 would give."""
    import dataclasses

    from .cpu import cpu_info
    from .runtime_select import (
        cpu_candidates,
        deploy_environment,
        measure,
        select_cpu_runtime,
        write_deploy_manifest,
    )

    threads = [cfg.threads] if cfg.threads else None
    iterations = max(3, cfg.iterations // cfg.rounds)
    ov_int8 = None
    if cfg.precision == "int8" and cfg.runtime != "ort" and calib is not None:
        from .backends.openvino import openvino_available

        if openvino_available():  # OpenVINO's own recipe is a candidate of its own
            from .quantize.nncf_engine import onnx_to_int8_openvino

            ov_int8 = onnx_to_int8_openvino(fp32, out / "model.int8-openvino.onnx", calib.images)
    info = cpu_info()
    seven = None
    if (
        cfg.precision == "int8"
        and cfg.runtime != "openvino"
        and cfg.gemm_input_bits == 8
        and info.u8s8_saturates
    ):  # exact on this CPU's fast u8s8 kernels, which clamp the 8-bit model's products
        from .quantize.u8s8_safe import seven_bit_candidate

        seven, why = seven_bit_candidate(int8, out / "model.int8-cpu7.onnx")
        if why:
            notes.append(f"no 7-bit GEMM-input candidate: {why}")
    sel = select_cpu_runtime(
        cfg.precision,
        fp32,
        int8,
        cfg.runtime,
        threads,
        cfg.rounds,
        iterations,
        cfg.warmup,
        openvino_int8_path=ov_int8,
        check_images=check_images,
        max_sqnr_drop_db=cfg.max_sqnr_drop_db,
        int8_7bit_path=seven,
    )
    for path, variants, key in (
        (ov_int8, ("int8-nncf",), "onnx_int8_openvino"),
        (seven, SEVEN_BIT, "onnx_int8_7bit"),
    ):
        if path is not None and sel.chosen.variant in variants:
            res.artifacts[key] = str(path)
        elif path is not None:
            path.unlink()  # not deployed; deploy.json still lists its times
    if sel.chosen.runtime == "openvino":  # deploy OpenVINO's own format beside the ONNX
        from .backends.openvino import onnx_to_openvino_ir

        name = Path(sel.chosen.model).with_suffix(".xml").name
        xml = onnx_to_openvino_ir(sel.chosen.model, out / name)
        res.artifacts["openvino_xml"] = str(xml)
        res.artifacts["openvino_bin"] = str(xml.with_suffix(".bin"))
        sel = dataclasses.replace(sel, chosen=dataclasses.replace(sel.chosen, model=str(xml)))
    manifest = write_deploy_manifest(out / "deploy.json", sel, info, deploy_environment())
    res.artifacts["deploy_manifest"] = str(manifest)
    faithful = [r for r in sel.results if r.median_ms is not None and not r.rejected]
    notes.append(
        f"CPU runtime: {sel.chosen.key} chosen for {cfg.precision} on {info.model} "
        f"({info.cpu_class}), fastest of {len(faithful)} candidates faithful to FP32 on "
        f"{len(check_images)} images, timed in interleaved rounds (deploy.json lists them)"
    )
    rejected = [r for r in sel.results if r.rejected]
    if rejected:
        worst = min(rejected, key=lambda r: r.fidelity["sqnr_db"])  # type: ignore[index]
        notes.append(
            f"CPU runtime: {len(rejected)} candidates not deployed for their fidelity to FP32 "
            f"({', '.join(r.candidate.key for r in rejected)}); worst: {worst.rejected}"
        )
    if info.has_bf16 and cfg.precision != "bf16" and cfg.runtime in (None, "openvino"):
        try:
            bf16 = cpu_candidates("bf16", fp32, threads=[sel.chosen.threads])
        except SwinEdgeError:
            bf16 = []  # OpenVINO is not installed
        if bf16:
            m = measure([sel.chosen, *bf16], cfg.rounds, iterations, cfg.warmup)
            if bf16[0].key in m.timings:
                r = np.asarray(m.timings[bf16[0].key]) / np.asarray(m.timings[sel.chosen.key])
                notes.append(
                    f"this CPU has hardware BF16: --precision bf16 (OpenVINO, no calibration) "
                    f"would take {float(np.median(r)):.2f}x the latency of the chosen "
                    f"{cfg.precision} model ({sel.chosen.key}), in {cfg.rounds} interleaved rounds"
                )
    return sel


def _runner_factory(cfg: BuildConfig, selection=None, chosen_name: str | None = None):
    from .backends.onnxrt import OnnxrtRunner, OrtConfig

    def make(c):
        if c.backend == "tensorrt":
            from .backends.tensorrt import TrtRunner

            return TrtRunner(c.path, batch_size=cfg.batch)
        if selection is not None and c.name == chosen_name:
            from .runtime_select import make_runner

            return make_runner(selection)  # the runtime, variant and threads that won
        return OnnxrtRunner(c.path, OrtConfig(threads=cfg.threads))

    return make
