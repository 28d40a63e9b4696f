"""Export timm's Swin-T as a user would, as an FP32 reference for benchmarks (NOT a dependency).

timm needs a heavy torch build, so run this in a separate environment (see
make_reference_fixtures.py), then hand the file to the benchmark:

    /tmp/fixvenv/bin/pip install torch==2.14.1 timm onnx onnxscript
    /tmp/fixvenv/bin/python scripts/export_timm_reference.py /tmp/timm_swin_t.onnx
    python scripts/bench_int8_cpu.py --reference timm=/tmp/timm_swin_t.onnx

The export is ``torch.onnx.export`` of ``timm.create_model("swin_tiny_patch4_window7_224")``
(opset 17, TorchScript exporter, dynamic batch), random weights with non-zero biases like
bench_int8_cpu.py's model. The issue's reference figure (off-the-shelf ONNX Runtime
quantization of timm's export: about 1.7x) is measured against this kind of file.
"""

from __future__ import annotations

import argparse
import sys

import timm
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="ONNX file to write")
    ap.add_argument("--model", default="swin_tiny_patch4_window7_224")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
    size = model.default_cfg["input_size"]
    torch.onnx.export(
        model,
        (torch.randn(1, *size),),
        args.out,
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    print(f"wrote {args.out} (timm {timm.__version__}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
