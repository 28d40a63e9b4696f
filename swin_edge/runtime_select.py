"""Build-time choice of the fastest CPU runtime on this machine, like TensorRT's tactic selection.

Which CPU runtime is fastest depends on the CPU (GEMM ISA tier, core count) and the precision:
ONNX Runtime runs a Q/DQ INT8 model as written (QGemm) or lowered (MatMulIntegerToFloat),
OpenVINO runs it as int8 too (and where the CPU's u8s8 kernels clamp, the same recipe with 7-bit
GEMM inputs runs exactly on the fast kernels), and the best thread count is not always "all
cores". So every runtime/variant/thread count that can run the model at the asked precision is a
:class:`CpuCandidate`; they are timed in interleaved rounds (:func:`measure`), the one with the
lowest median per-round p50 wins (:func:`select`), and the choice, the CPU it was made on and
every candidate's per-round times go to ``deploy.json`` (:func:`write_deploy_manifest`), from
which :func:`make_runner` builds the chosen runner. Candidates never cross precisions: a faster
bf16 or int8 model is a different model, not a faster way to run this one.

Speed alone is not enough: two runtimes can run the same Q/DQ file with very different error
(OpenVINO 2026.4 on some dynamic-batch exports loses 25 dB of SQNR; see README), and OpenVINO's own
NNCF recipe is a different quantization. So where check images are run (:func:`check_outputs`),
a candidate whose output SQNR against FP32 is more than ``max_sqnr_drop_db`` below the best
candidate's (and under :data:`SQNR_ALWAYS_OK_DB`) is timed and listed but never chosen.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cpu import CpuInfo, cpu_info, num_cores
from .errors import MissingDependencyError, SwinEdgeError
from .utils import read_json_doc, write_json_atomic

RUNTIMES = ("ort", "openvino")  # also the tie-break order: ONNX Runtime needs no extra install
PRECISIONS = ("fp32", "bf16", "int8")
# (runtime, variant) pairs offered per precision, in tie-break order.
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "fp32": (("ort", "f32"), ("openvino", "f32")),
    "bf16": (("openvino", "bf16"),),
    "int8": (
        ("ort", "lowered"),
        ("ort", "as-written"),
        ("openvino", "int8"),
        ("openvino", "int8-nncf"),  # OpenVINO's own recipe (NNCF defaults), its own file
        # The cpu recipe with 7-bit GEMM inputs (its own file), only where u8s8 kernels clamp:
        # exact with the fast kernels there, for one bit of activation resolution.
        ("ort", "lowered-7bit"),
        ("ort", "as-written-7bit"),
    ),
}
SEVEN_BIT = ("lowered-7bit", "as-written-7bit")
LOWERED = ("lowered", "lowered-7bit")
MANIFEST_FORMAT = "swin_edge.cpu-deploy/1"
MANIFEST_NAME = "deploy.json"
OPENVINO_HINT = "pip install 'swin_edge[openvino]'"
MAX_SQNR_DROP_DB = 10.0  # default: 10x the noise power of the most faithful candidate
SQNR_ALWAYS_OK_DB = 40.0  # at or above this SQNR vs FP32 a candidate is never rejected


@dataclass(frozen=True)
class CpuCandidate:
    """One way to run the model: runtime, variant, precision, threads and the model file."""

    runtime: str  # ort | openvino
    variant: str  # ort: f32 | lowered | as-written; openvino: f32 | bf16 | int8 | int8-nncf
    precision: str  # fp32 | bf16 | int8
    threads: int
    model: str

    def __post_init__(self) -> None:
        if (self.runtime, self.variant) not in VARIANTS.get(self.precision, ()):
            raise SwinEdgeError(
                f"no CPU candidate runs {self.precision} as {self.runtime}/{self.variant}"
            )
        if not isinstance(self.threads, int) or self.threads < 1:
            raise SwinEdgeError(f"candidate threads {self.threads!r}: must be an int >= 1")

    @property
    def key(self) -> str:
        """Unique name within one precision, e.g. ``ort/lowered/2t``."""
        return f"{self.runtime}/{self.variant}/{self.threads}t"

    def sort_key(self) -> tuple[int, int, int]:
        """Tie-break order: fewer threads, then ONNX Runtime, then the variant order above."""
        pairs = VARIANTS[self.precision]
        return (
            self.threads,
            RUNTIMES.index(self.runtime),
            pairs.index((self.runtime, self.variant)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "runtime": self.runtime,
            "variant": self.variant,
            "precision": self.precision,
            "threads": self.threads,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CpuCandidate:
        return cls(d["runtime"], d["variant"], d["precision"], d["threads"], str(d["model"]))


def thread_counts(cores: int) -> tuple[int, ...]:
    """Thread counts worth trying: powers of two below ``cores``, and ``cores`` itself."""
    if cores < 1:
        raise SwinEdgeError(f"{cores} cores: need at least 1")
    counts = {cores}
    t = 1
    while t < cores:
        counts.add(t)
        t *= 2
    return tuple(sorted(counts))


def cpu_candidates(
    precision: str,
    fp32_path: str | Path | None,
    int8_path: str | Path | None = None,
    cores: int | None = None,
    openvino_available: bool | None = None,
    has_bf16: bool | None = None,
    runtime: str | None = None,
    threads: Sequence[int] | None = None,
    openvino_int8_path: str | Path | None = None,
    int8_7bit_path: str | Path | None = None,
    u8s8_saturates: bool | None = None,
) -> list[CpuCandidate]:
    """Every candidate for ``precision`` (``None`` arguments are detected on this machine).

    int8 (``int8_path``, the Q/DQ model): ONNX Runtime lowered and as written, OpenVINO int8,
    with ``openvino_int8_path`` (OpenVINO's own NNCF recipe) OpenVINO int8-nncf, and with
    ``int8_7bit_path`` (the same recipe with 7-bit GEMM inputs) ONNX Runtime lowered-7bit and
    as-written-7bit where the CPU's u8s8 kernels clamp (elsewhere it is as fast as the 8-bit
    model and less accurate);
    fp32 (``fp32_path``): ONNX Runtime, OpenVINO f32; bf16 (``fp32_path``): OpenVINO bf16,
    only on CPUs with hardware BF16. Each at :func:`thread_counts` (or ``threads``).
    ``runtime`` pins one runtime (``--runtime ort|openvino``); OpenVINO candidates are left out
    when it is not installed, unless it is pinned or needed (bf16): then that is an error.
    """
    if precision not in PRECISIONS:
        raise SwinEdgeError(f"--precision {precision!r}: CPU runtimes take {', '.join(PRECISIONS)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise SwinEdgeError(f"--runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    model = int8_path if precision == "int8" else fp32_path
    if model is None:
        what = "the Q/DQ INT8 model" if precision == "int8" else "the FP32 model"
        raise SwinEdgeError(f"{precision} CPU candidates need {what}; quantize or export first")
    if has_bf16 is None:
        has_bf16 = cpu_info().has_bf16
    if precision == "bf16":
        if not has_bf16:
            raise SwinEdgeError(
                "--precision bf16 needs a CPU with AMX-BF16 or AVX512-BF16 and this one has "
                "neither; use --precision fp32 or int8"
            )
        if runtime == "ort":
            raise SwinEdgeError(
                "--precision bf16 runs on OpenVINO only (ONNX Runtime's CPU provider has no "
                "bf16 kernels); use --runtime openvino or leave --runtime out"
            )
    pairs = [p for p in VARIANTS[precision] if runtime is None or p[0] == runtime]
    if any(r == "openvino" for r, _ in pairs):
        if openvino_available is None:
            from .backends.openvino import openvino_available as probe

            openvino_available = probe()
        if not openvino_available:
            if runtime == "openvino" or precision == "bf16":
                why = "--runtime openvino" if runtime == "openvino" else "--precision bf16"
                raise MissingDependencyError(
                    f"{why} needs OpenVINO, which is not installed; {OPENVINO_HINT}"
                )
            pairs = [p for p in pairs if p[0] != "openvino"]
    if openvino_int8_path is None:
        pairs = [p for p in pairs if p[1] != "int8-nncf"]
    if int8_7bit_path is not None and u8s8_saturates is None:
        u8s8_saturates = cpu_info().u8s8_saturates
    if int8_7bit_path is None or not u8s8_saturates:
        pairs = [p for p in pairs if p[1] not in SEVEN_BIT]
    counts = tuple(threads) if threads else thread_counts(cores or num_cores())
    files = {"int8-nncf": str(openvino_int8_path)}
    files |= {v: str(int8_7bit_path) for v in SEVEN_BIT}
    return [
        CpuCandidate(r, v, precision, t, files.get(v, str(model)))
        for t in sorted(set(counts))
        for r, v in pairs
    ]


@dataclass
class CandidateResult:
    """A candidate's per-round p50s (ms), their median, and its latency relative to the chosen
    one (median of per-round ratios; 1.0 for the chosen). ``error``: why it was not timed;
    ``rejected``: why a timed candidate may not be chosen (its fidelity to FP32)."""

    candidate: CpuCandidate
    p50s_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    vs_chosen: float | None = None
    error: str | None = None
    fidelity: dict[str, Any] | None = None  # vs FP32 reference outputs, where checked
    rejected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            **self.candidate.to_dict(),
            "p50_ms_per_round": self.p50s_ms,
            "median_p50_ms": self.median_ms,
            "latency_vs_chosen": self.vs_chosen,
            "error": self.error,
        }
        if self.fidelity is not None:
            d["fidelity"] = self.fidelity
        return d if self.rejected is None else {**d, "rejected": self.rejected}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidateResult:
        p50s = [float(v) for v in d["p50_ms_per_round"]]
        median = d["median_p50_ms"]
        vs = d["latency_vs_chosen"]
        return cls(
            CpuCandidate.from_dict(d),
            p50s,
            None if median is None else float(median),
            None if vs is None else float(vs),
            d.get("error"),
            d.get("fidelity"),
            d.get("rejected"),
        )


@dataclass
class Selection:
    """The chosen candidate and every candidate's result, fastest first (untimed ones last)."""

    precision: str
    chosen: CpuCandidate
    results: list[CandidateResult]
    benchmark: dict[str, Any] = field(default_factory=dict)  # rounds, iterations, warmup, batch


def select(
    candidates: Sequence[CpuCandidate],
    timings: Mapping[str, Sequence[float]],
    errors: Mapping[str, str] | None = None,
    benchmark: Mapping[str, Any] | None = None,
    fidelity: Mapping[str, Mapping[str, Any]] | None = None,
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB,
) -> Selection:
    """The candidate with the lowest median of its per-round p50s (``timings[c.key]``, ms);
    exact ties go to fewer threads, then ONNX Runtime, then the variant order. Candidates
    without timings (failed to load: ``errors[c.key]``) are listed but never chosen, nor are
    those whose ``fidelity[c.key]`` fails :func:`unfaithful`'s rule. ``fidelity`` may also
    hold a baseline that is not a candidate (ONNX Runtime when OpenVINO is pinned); when no
    candidate is within the rule of it, that is an error, not a choice."""
    if not candidates:
        raise SwinEdgeError("no CPU runtime candidates to choose from")
    precisions = sorted({c.precision for c in candidates})
    if len(precisions) > 1:
        raise SwinEdgeError(f"candidates mix precisions {precisions}; compare one at a time")
    keys = [c.key for c in candidates]
    if len(set(keys)) != len(keys):
        raise SwinEdgeError(f"duplicate CPU candidates in {keys}")
    if not max_sqnr_drop_db >= 0:
        raise SwinEdgeError(f"--max-sqnr-drop {max_sqnr_drop_db}: use a number of dB >= 0")
    errors, fidelity = errors or {}, fidelity or {}
    timed: list[CandidateResult] = []
    untimed: list[CandidateResult] = []
    for c in candidates:
        p50s = [float(v) for v in timings.get(c.key, ())]
        if not p50s:
            untimed.append(CandidateResult(c, error=errors.get(c.key, "not timed")))
            continue
        if not all(np.isfinite(v) and v > 0 for v in p50s):
            raise SwinEdgeError(f"candidate {c.key}: latencies must be finite and > 0, got {p50s}")
        fid = dict(fidelity[c.key]) if c.key in fidelity else None
        timed.append(CandidateResult(c, p50s, float(np.median(p50s)), fidelity=fid))
    if not timed:
        why = "; ".join(f"{r.candidate.key}: {r.error}" for r in untimed)
        raise SwinEdgeError(f"no CPU runtime candidate could be timed ({why})")
    reasons = unfaithful(fidelity, max_sqnr_drop_db)
    for r in timed:
        r.rejected = reasons.get(r.candidate.key)
    timed.sort(key=lambda r: (r.rejected is not None, r.median_ms, r.candidate.sort_key()))
    best = timed[0]
    if best.rejected:  # only possible against a baseline that is not a candidate
        raise SwinEdgeError(
            f"no {precisions[0]} candidate is faithful enough: {best.candidate.key} has "
            f"{best.rejected}; OpenVINO can lose accuracy on dynamic-batch exports (README, CPU "
            "runtime selection): export a static batch or let ONNX Runtime run it"
        )
    for r in timed:
        r.vs_chosen = _relative(r.p50s_ms, best.p50s_ms)
    settings = dict(benchmark or {})
    if fidelity:
        settings["max_sqnr_drop_db"] = max_sqnr_drop_db
        extra = {k: dict(v) for k, v in fidelity.items() if k not in keys}
        if extra:
            settings["baseline_fidelity"] = extra
    return Selection(precisions[0], best.candidate, timed + untimed, settings)


def unfaithful(
    fidelity: Mapping[str, Mapping[str, Any]], max_drop_db: float = MAX_SQNR_DROP_DB
) -> dict[str, str]:
    """Why each key of ``fidelity`` (its ``sqnr_db`` vs FP32) may not be deployed: its SQNR
    is below both the best one's minus ``max_drop_db`` and :data:`SQNR_ALWAYS_OK_DB`."""
    sqnr = {k: _sqnr(v) for k, v in fidelity.items()}
    sqnr = {k: v for k, v in sqnr.items() if v is not None}
    if not sqnr:
        return {}
    best = max(sqnr, key=lambda k: sqnr[k])
    bar = min(SQNR_ALWAYS_OK_DB, sqnr[best] - max_drop_db)
    return {
        k: f"SQNR {v:.1f} dB vs FP32, {sqnr[best] - v:.1f} dB below {best} "
        f"({sqnr[best]:.1f} dB; limit --max-sqnr-drop {max_drop_db:g} dB)"
        for k, v in sqnr.items()
        if v < bar
    }


def _sqnr(fid: Mapping[str, Any]) -> float | None:
    return float("inf") if fid.get("exact") else fid.get("sqnr_db")


def fidelity_dict(
    names: Sequence[str], reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]
) -> dict[str, Any]:
    """:func:`~swin_edge.metrics.fidelity_per_output`'s summary as stored in ``deploy.json``:
    outputs identical to the reference have no finite SQNR, so they are ``exact`` with
    ``sqnr_db`` null (JSON has no Infinity)."""
    from .metrics import fidelity_per_output

    d = fidelity_per_output(list(names), list(reference), list(outputs))[0].to_dict()
    if d["sqnr_db"] == float("inf"):
        d.update(sqnr_db=None, exact=True)
    return d


def baseline_fidelity(
    precision: str,
    fp32_path: str | Path | None,
    int8_path: str | Path | None,
    images: np.ndarray,
    names: Sequence[str],
    reference: Sequence[np.ndarray],
) -> dict[str, dict[str, Any]]:
    """With OpenVINO pinned, ONNX Runtime's fidelity on the same model (key ``ort/<variant>``,
    not a candidate): what the pinned candidates are held to. Empty for bf16 (no ORT path)."""
    pairs = [v for r, v in VARIANTS.get(precision, ()) if r == "ort" and v != "lowered"]
    model = int8_path if precision == "int8" else fp32_path
    if not pairs or model is None:
        return {}
    runner = make_runner(CpuCandidate("ort", pairs[0], precision, num_cores(), str(model)))
    with runner:
        outs = runner.infer_all_outputs(images)
    return {f"ort/{pairs[0]}": fidelity_dict(names, reference, outs)}


def check_outputs(
    m: Measurement, names: Sequence[str], reference: Sequence[np.ndarray]
) -> tuple[dict[str, list[float]], dict[str, str], dict[str, dict[str, Any]]]:
    """Timings, errors and fidelity for :func:`select` from a :func:`measure` run with inputs:
    a candidate with non-finite outputs becomes an error (never chosen), every other one gets
    its fidelity to ``reference`` (the FP32 outputs on the same inputs)."""
    timings, errors, fid = dict(m.timings), dict(m.errors), {}
    for key, outs in m.outputs.items():
        if not all(np.isfinite(o).all() for o in outs):
            errors[key] = "non-finite outputs on the check images"
            timings.pop(key, None)
            continue
        fid[key] = fidelity_dict(names, reference, outs)
    return timings, errors, fid


def select_checked(
    candidates: Sequence[CpuCandidate],
    m: Measurement,
    images: np.ndarray,
    names: Sequence[str],
    reference: Sequence[np.ndarray],
    *,
    runtime: str | None = None,
    fp32_path: str | Path | None = None,
    int8_path: str | Path | None = None,
    benchmark: Mapping[str, Any] | None = None,
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB,
) -> Selection:
    """:func:`select` on a :func:`measure` run over ``images`` (:func:`check_outputs` against
    the FP32 ``reference``); with OpenVINO pinned (``runtime``), its candidates are held to
    ONNX Runtime's fidelity on the same model (:func:`baseline_fidelity`)."""
    timings, errors, fidelity = check_outputs(m, names, reference)
    if runtime == "openvino":
        precision = candidates[0].precision
        fidelity |= baseline_fidelity(precision, fp32_path, int8_path, images, names, reference)
    bench = m.benchmark if benchmark is None else benchmark
    return select(candidates, timings, errors, bench, fidelity, max_sqnr_drop_db)


def _relative(p50s: list[float], ref: list[float]) -> float:
    """Median of per-round ratios when both have the same rounds, else the ratio of medians."""
    if len(p50s) == len(ref):
        return float(np.median(np.asarray(p50s) / np.asarray(ref)))
    return float(np.median(p50s) / np.median(ref))


def make_runner(target: DeployManifest | Selection | CpuCandidate) -> Any:
    """The (not yet activated) runner for a chosen candidate: :class:`OnnxrtRunner` or
    :class:`OpenvinoRunner` with its runtime settings."""
    c = target.chosen if isinstance(target, (DeployManifest, Selection)) else target
    if c.runtime == "ort":
        from .backends.onnxrt import OnnxrtRunner, OrtConfig

        return OnnxrtRunner(c.model, OrtConfig(threads=c.threads, lower_int8=c.variant in LOWERED))
    from .backends.openvino import OpenvinoRunner, OvConfig

    precision = "bf16" if c.variant == "bf16" else "f32"
    return OpenvinoRunner(c.model, OvConfig(threads=c.threads, precision=precision))


@dataclass
class Measurement:
    """Per-round p50s (ms) by candidate key, why candidates could not be loaded, the
    benchmark settings and, when ``measure`` got inputs, every output by candidate key."""

    timings: dict[str, list[float]]
    errors: dict[str, str]
    benchmark: dict[str, Any]
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)


def measure(
    candidates: Sequence[CpuCandidate],
    rounds: int = 5,
    iterations: int = 20,
    warmup: int = 5,
    inputs: np.ndarray | None = None,
) -> Measurement:
    """Load every candidate and time them in interleaved rounds
    (:func:`~swin_edge.backends.timing.interleaved_benchmark`); with ``inputs`` (N, 3, H, W)
    also run each on them (``outputs``). A candidate whose runtime cannot load the model is
    recorded in ``errors`` and left out, unless all are."""
    from .backends.timing import interleaved_benchmark

    if rounds < 1 or iterations < 1 or warmup < 0:
        raise SwinEdgeError("--rounds and --iterations must be >= 1 and --warmup >= 0")
    runners: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for c in candidates:
        runner = make_runner(c)
        try:
            runner.activate()
        except SwinEdgeError as e:
            errors[c.key] = str(e)
            continue
        runners[c.key] = runner
    if not runners:
        raise SwinEdgeError(f"no CPU runtime could load the model ({'; '.join(errors.values())})")
    outputs: dict[str, list[np.ndarray]] = {}
    try:
        timing = interleaved_benchmark(runners, rounds, iterations, warmup)
        if inputs is not None:
            outputs = {k: r.infer_all_outputs(inputs) for k, r in runners.items()}
    finally:
        for r in runners.values():
            r.__exit__(None, None, None)
    batch = next(iter(timing.rounds.values()))[0].batch_size
    settings = {"rounds": rounds, "iterations": iterations, "warmup": warmup, "batch_size": batch}
    return Measurement({k: timing.p50s(k) for k in runners}, errors, settings, outputs)


def fp32_reference(
    fp32_path: str | Path, images: np.ndarray
) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """``images`` as float32, cycled to fill whole batches of the model's static batch, the
    model's output names and its outputs on them in ONNX Runtime: the FP32 reference that
    :func:`check_outputs` compares candidates with."""
    import onnx

    from .backends.onnxrt import OnnxrtRunner, OrtConfig
    from .quantize.common import input_info

    model = onnx.load(str(fp32_path), load_external_data=False)
    batch = input_info(model)[1] or 1
    n = -(-len(images) // batch) * batch
    images = np.ascontiguousarray(np.resize(images, (n, *images.shape[1:])), dtype=np.float32)
    with OnnxrtRunner(fp32_path, OrtConfig(threads=0)) as r:
        outputs = r.infer_all_outputs(images)
    return images, [o.name for o in model.graph.output], outputs


def select_cpu_runtime(
    precision: str,
    fp32_path: str | Path,
    int8_path: str | Path | None = None,
    runtime: str | None = None,
    threads: Sequence[int] | None = None,
    rounds: int = 5,
    iterations: int = 20,
    warmup: int = 5,
    openvino_int8_path: str | Path | None = None,
    check_images: np.ndarray | None = None,
    max_sqnr_drop_db: float = MAX_SQNR_DROP_DB,
    int8_7bit_path: str | Path | None = None,
) -> Selection:
    """:func:`cpu_candidates` on this machine, :func:`measure`, :func:`select`; with
    ``check_images``, each candidate's outputs on them are checked against the FP32 model's
    (:func:`check_outputs`) and unfaithful candidates are never chosen."""
    candidates = cpu_candidates(
        precision,
        fp32_path,
        int8_path,
        runtime=runtime,
        threads=threads,
        openvino_int8_path=openvino_int8_path,
        int8_7bit_path=int8_7bit_path,
    )
    if check_images is None:
        m = measure(candidates, rounds, iterations, warmup)
        return select(candidates, m.timings, m.errors, m.benchmark)
    images, names, ref = fp32_reference(fp32_path, check_images)
    m = measure(candidates, rounds, iterations, warmup, inputs=images)
    return select_checked(
        candidates,
        m,
        images,
        names,
        ref,
        runtime=runtime,
        fp32_path=fp32_path,
        int8_path=int8_path,
        benchmark={**m.benchmark, "check_images": len(images)},
        max_sqnr_drop_db=max_sqnr_drop_db,
    )


def deploy_environment() -> dict[str, Any]:
    """Software versions worth recording beside a runtime choice."""
    import onnxruntime

    from .backends.openvino import openvino_version

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": num_cores(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
    }


@dataclass
class DeployManifest:
    """``deploy.json`` read back: the selection (model paths resolved), CPU and environment."""

    path: Path
    selection: Selection
    cpu: dict[str, Any]
    env: dict[str, Any]

    @property
    def chosen(self) -> CpuCandidate:
        return self.selection.chosen

    def cpu_note(self, info: CpuInfo | None = None) -> str | None:
        """A warning when this CPU's class differs from the one the choice was made on."""
        info = info or cpu_info()
        if info.cpu_class == self.cpu.get("class"):
            return None
        fix = (  # a CPU bundle re-selects in place; a build run folder is rebuilt
            f"run {self.path.parent / 'select_runtime.sh'} here"
            if (self.path.parent / "bundle.json").is_file()
            else "rebuild on this machine"
        )
        return (
            f"'{self.path}' was chosen on a {self.cpu.get('class')} CPU ({self.cpu.get('model')}),"
            f" this is {info.cpu_class}; {fix} to pick the fastest runtime for it"
        )


def _stored_path(model: str, folder: Path) -> str:
    """``model`` relative to the manifest's folder when it lies inside it (portable runs)."""
    try:
        return Path(model).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(Path(model).resolve())


def write_deploy_manifest(
    path: str | Path,
    selection: Selection,
    cpu: CpuInfo,
    env: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``deploy.json`` atomically: the choice, the CPU (model, class, ISA flags), the
    environment, every candidate's per-round times and ``extra`` keys."""
    path = Path(path)

    def stored(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "model": _stored_path(d["model"], path.parent)}

    doc = {
        "format": MANIFEST_FORMAT,
        "precision": selection.precision,
        "chosen": stored(selection.chosen.to_dict()),
        "cpu": cpu.to_dict(),
        "env": dict(env),
        "benchmark": selection.benchmark,
        "candidates": [stored(r.to_dict()) for r in selection.results],
        **dict(extra or {}),
    }
    return write_json_atomic(path, doc)


def read_deploy_manifest(path: str | Path) -> DeployManifest:
    """Read and validate ``deploy.json``; a missing, corrupt or foreign file is a one-line
    error saying to rebuild."""
    path = Path(path)
    rebuild = "rebuild it with `python -m swin_edge build` (it writes deploy.json)"
    if not path.is_file():
        raise SwinEdgeError(f"'{path}' does not exist; {rebuild}")
    doc = read_json_doc(path, MANIFEST_FORMAT, "swin_edge CPU deployment manifest", rebuild)

    def resolved(d: dict[str, Any]) -> dict[str, Any]:
        model = Path(d["model"])
        return {**d, "model": str(model if model.is_absolute() else path.parent / model)}

    try:
        chosen = CpuCandidate.from_dict(resolved(doc["chosen"]))
        results = [CandidateResult.from_dict(resolved(d)) for d in doc["candidates"]]
        cpu, env = dict(doc["cpu"]), dict(doc["env"])
        benchmark = dict(doc.get("benchmark") or {})
        precision = doc["precision"]
    except (KeyError, TypeError, ValueError, AttributeError, SwinEdgeError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0][:120]
        raise SwinEdgeError(f"'{path}' is malformed ({what}); {rebuild}") from None
    keys = [r.candidate.key for r in results]
    if chosen.key not in keys or {precision} != {r.candidate.precision for r in results}:
        raise SwinEdgeError(
            f"'{path}' is malformed (chosen {chosen.key} is not among its {precision} "
            f"candidates); {rebuild}"
        )
    selection = Selection(precision, chosen, results, benchmark)
    return DeployManifest(path, selection, cpu, env)


def load_deployed(path: str | Path, warn: bool = True) -> Any:
    """The runner ``deploy.json`` (a file, or the folder holding it) says to run the model
    with: ``with load_deployed("bundle") as r: logits = r.infer(batch)``. In a CPU bundle
    every file is first verified against ``bundle.json``. Warns (stderr) when this CPU is of
    another class than the one the choice was made on."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if (folder / "bundle.json").is_file():
        from .cpu_bundle import read_cpu_bundle

        read_cpu_bundle(folder)  # a changed or missing model file is an error, not a guess
        if not (folder / MANIFEST_NAME).exists():
            raise SwinEdgeError(
                f"'{folder}' (a CPU bundle) has no {MANIFEST_NAME} yet: run "
                f"{folder / 'select_runtime.sh'} there first"
            )
    manifest = read_deploy_manifest(folder / MANIFEST_NAME if path.is_dir() else path)
    note = manifest.cpu_note()
    if warn and note:
        import warnings

        warnings.warn(note, stacklevel=2)
    return make_runner(manifest)
