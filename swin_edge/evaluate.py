"""Evaluate several models (precisions/backends) on the same images against the FP32 one."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends.timing import LatencyStats, interleaved_benchmark
from .errors import SwinEdgeError
from .metrics import Accuracy, Fidelity, accuracy, fidelity, fidelity_per_output
from .onnx_check import ImageModelInfo, check_image_model_file


@dataclass
class Candidate:
    """A model to evaluate: ``name`` like ``onnxruntime-int8``; ``path`` to ONNX or engine."""

    name: str
    backend: str  # onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8
    path: Path
    recipe: dict[str, Any] | None = None


@dataclass
class Evaluation:
    name: str
    backend: str
    precision: str
    path: str
    size_mb: float
    latency: LatencyStats | None = None
    accuracy: Accuracy | None = None
    fidelity: Fidelity | None = None
    worst_layers: list[tuple[str, float]] = field(default_factory=list)
    recipe: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None  # how the runner ran it (e.g. ORT lowering)
    speedup: dict[str, float | int] | None = None  # vs the reference, over interleaved rounds
    outputs: list[dict[str, Any]] | None = None  # several outputs: fidelity of each

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "path": self.path,
            "size_mb": round(self.size_mb, 3),
            "latency": self.latency.to_dict() if self.latency else None,
            "speedup": self.speedup,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "fidelity": self.fidelity.to_dict() if self.fidelity else None,
            "worst_layers": [[n, round(v, 2)] for n, v in self.worst_layers],
            "recipe": self.recipe,
            "runtime": self.runtime,
        }
        if self.outputs is not None:  # single-output reports keep their old form
            d["outputs"] = self.outputs
        return d


Runner = Any  # OnnxrtRunner | OpenvinoRunner | TrtRunner: infer_all(images), benchmark(...)


def infer_outputs(
    runner: Runner, images: np.ndarray, names: Sequence[str] = ()
) -> list[np.ndarray]:
    """Every output of a runner that can give them (ONNX Runtime, OpenVINO, TensorRT), else
    the first. A runner that names its outputs (TensorRT: the engine's order) gets them put in
    the order of ``names`` (the ONNX's) when both hold the same names."""
    if not hasattr(runner, "infer_all_outputs"):
        return [runner.infer_all(images)]
    outputs = list(runner.infer_all_outputs(images))
    have = list(getattr(runner, "output_names", None) or [])
    if len(have) == len(outputs) and sorted(have) == sorted(names):
        outputs = [outputs[have.index(n)] for n in names]
    return outputs


def _io_of(cand: Candidate) -> ImageModelInfo | None:
    """Shapes of an ONNX candidate, or of the ONNX an engine was built from (its manifest
    names it); None when an engine's source cannot be found (its runner checks it)."""
    if Path(cand.path).suffix == ".xml":  # OpenVINO IR: its runner checks the shapes
        return None
    if cand.backend != "tensorrt":
        return check_image_model_file(cand.path)
    if not Path(cand.path).is_file():
        raise SwinEdgeError(f"engine '{cand.path}' does not exist; build it with `engine` first")
    try:
        manifest = json.loads(Path(f"{cand.path}.json").read_text())
        source = Path(cand.path).parent / manifest["onnx"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return check_image_model_file(source) if source.is_file() else None


def check_candidates(
    candidates: list[Candidate], images: np.ndarray, labels: np.ndarray | None = None
) -> ImageModelInfo | None:
    """Refuse, before any inference, candidates that are not image models or whose input or
    output shapes differ from the first (reference) one, and images or labels that do not fit.
    Returns the I/O of the first model whose shapes are known."""
    if not candidates:
        raise SwinEdgeError("no models to evaluate; pass the FP32 reference model first")
    infos = [_io_of(c) for c in candidates]
    known = [(c, i) for c, i in zip(candidates, infos, strict=True) if i is not None]
    if not known:
        return None
    ref, ref_info = known[0]
    for cand, info in known[1:]:
        if not info.same_shapes(ref_info):
            raise SwinEdgeError(
                f"'{cand.path}' ({info.describe()}) does not match the reference '{ref.path}' "
                f"({ref_info.describe()}); compare models exported from the same model with the "
                "same --img-size and --num-classes"
            )
    if tuple(images.shape[1:]) != ref_info.input_shape[1:]:
        raise SwinEdgeError(
            f"the images are {tuple(images.shape[1:])} each but '{ref.path}' takes "
            f"{ref_info.input_shape[1:]}; preprocess them with the model's config"
        )
    out = ref_info.output_shapes[0]
    if labels is not None and len(labels) and len(out) == 2 and out[1] is not None:
        if int(labels.max()) >= out[1]:
            raise SwinEdgeError(
                f"the evaluation folder has class index {int(labels.max())} but '{ref.path}' "
                f"has {out[1]} outputs; class subfolders (sorted) must map to the model's classes"
            )
    return ref_info


def evaluate(
    candidates: list[Candidate],
    images: np.ndarray,
    labels: np.ndarray | None,
    make_runner: Callable[[Candidate], Runner],
    iterations: int = 50,
    warmup: int = 10,
    progress: Callable[[str], None] | None = None,
    rounds: int = 5,
) -> list[Evaluation]:
    """Run every candidate; the first one is the FP32 reference for fidelity and speedup.

    A model with several outputs (a feature backbone) is compared output by output
    (``Evaluation.outputs``); its ``fidelity`` then holds the lowest cosine and SQNR, and
    accuracy (with labels) is taken from the first output when it is logits.

    Latency is measured in ``rounds`` interleaved rounds over all candidates (``iterations``
    timed runs per candidate in all), and each speedup is the median of per-round ratios, so a
    busy spell on a shared machine cannot make one model look faster than another."""
    info = check_candidates(candidates, images, labels)  # before any inference
    rounds = max(1, min(rounds, iterations))
    results: list[Evaluation] = []
    reference: list[np.ndarray] | None = None
    with contextlib.ExitStack() as stack:
        runners = {}
        for i, cand in enumerate(candidates):  # keyed by position: names may repeat
            if progress:
                progress(f"evaluating {cand.name}")
            runner = stack.enter_context(make_runner(cand))
            runners[str(i)] = runner
            outputs = infer_outputs(runner, images, info.output_names if info else ())
            logits = outputs[0]
            runtime = runner.runtime_info() if hasattr(runner, "runtime_info") else None
            ev = Evaluation(
                cand.name,
                cand.backend,
                cand.precision,
                str(cand.path),
                os.path.getsize(cand.path) / 1e6,
                recipe=cand.recipe,
                runtime=runtime,
            )
            if labels is not None and logits.ndim == 2:
                if labels.max() >= logits.shape[1]:
                    raise SwinEdgeError(
                        f"the evaluation folder has class index {int(labels.max())} but "
                        f"'{cand.path}' has {logits.shape[1]} outputs; class subfolders (sorted) "
                        "must map to the model's classes"
                    )
                ev.accuracy = accuracy(logits, labels)
            if reference is None:
                reference = outputs
            elif len(reference) > 1 and len(outputs) == len(reference):
                names = list(info.output_names) if info else []
                names += [f"output{k}" for k in range(len(names), len(outputs))]
                ev.fidelity, ev.outputs = fidelity_per_output(names, reference, outputs)
            else:  # one output (or a runner that gives only the first)
                ev.fidelity = fidelity(reference[0], logits)
            results.append(ev)
        if progress:
            progress(f"timing {len(runners)} models in {rounds} interleaved rounds")
        timing = interleaved_benchmark(runners, rounds, -(-iterations // rounds), warmup)
    for i, ev in enumerate(results):
        ev.latency = timing.pooled(str(i))
        ev.speedup = timing.speedup(str(i), "0")
    return results
