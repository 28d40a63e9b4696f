"""What ONNX Runtime's fast INT8 kernels of an x86 CPU without VNNI would do to a model (analysis,
not a test), on any machine.

    python scripts/u8s8_saturation.py RUN/model.onnx RUN/model.int8-cpu.onnx
        [--eval-dir DIR] [--num-images 16] [--threads 0]

On AVX2 and AVX-512 without VNNI, ONNX Runtime's u8 x s8 GEMM kernels sum each neighbouring
pair of products in saturating int16 (``vpmaddubsw``); swin_edge therefore runs ONNX Runtime's
exact u8u8 kernels there (``OrtConfig.exact_u8s8``, ``session.x64quantprecision``). This prints,
against the FP32 model, the INT8 model as ONNX Runtime runs it exactly, with its default kernels
on this CPU (exact with VNNI/AMX), and as the fast kernels of a CPU without VNNI would run it
(:func:`swin_edge.backends.onnxrt_u8s8.saturating_model`, emulated in float): how much the exact
setting is worth on such a CPU, e.g. for a runtime or server that uses the default kernels
(Triton's ONNX Runtime backend cannot set it). Under ``scripts/avx2_view.sh`` the second row is
those fast kernels themselves, natively.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig
from swin_edge.backends.onnxrt_u8s8 import saturating_file
from swin_edge.calibration import load_images
from swin_edge.commands import common
from swin_edge.errors import SwinEdgeError
from swin_edge.metrics import accuracy, fidelity


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=common.input_file("pass the FP32 model build wrote"))
    parser.add_argument("int8", type=common.input_file("pass a cpu-recipe Q/DQ model"))
    common.add_image_args(parser, "eval", 16)
    parser.add_argument("--threads", type=common.threads, default=0)
    args = parser.parse_args()
    try:
        data = load_images(args.eval_dir, common.preprocess_of(args.fp32), args.num_images)
        cfg = OrtConfig(threads=args.threads, lower_int8=False, exact_u8s8=False)

        def infer(path: Path | str, exact: bool = False) -> np.ndarray:
            with OnnxrtRunner(path, replace(cfg, exact_u8s8=exact)) as r:
                return r.infer_all(data.images, batch_size=1)

        ref, exact, default = infer(args.fp32), infer(args.int8, True), infer(args.int8)
        with tempfile.TemporaryDirectory() as tmp:
            emulated = Path(tmp) / "saturating.onnx"
            gemms = saturating_file(args.int8, emulated)
            clamped = infer(emulated)
    except SwinEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.int8}: {gemms} u8 x s8 GEMMs; {len(data.images)} images; against FP32:")
    rows = (
        ("exact (x64quantprecision)", exact),
        ("ONNX Runtime's defaults here", default),
        ("emulated fast kernels, no VNNI", clamped),
    )
    for name, out in rows:
        f = fidelity(ref, out)
        acc = ""
        if data.labels is not None and len(np.unique(data.labels)) > 1:
            acc = f"  top-1 {accuracy(out, data.labels).top1:.4f}"
        print(
            f"  {name:32s} SQNR {f.sqnr_db:5.1f} dB  cosine {f.cosine:.5f}  top-1 agreement "
            f"{f.top1_agreement:.3f}{acc}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
