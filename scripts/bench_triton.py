"""Benchmark (not a test): Swin-T INT8 served by a local Triton (Python backend, swin_edge's
ONNX Runtime runner), dynamic batching on vs off, then a long run at the highest concurrency.

    python scripts/bench_triton.py [--concurrency 1,2,4,8] [--duration 20] [--warmup 5]
                                   [--soak 60] [--protocol http|grpc] [--threads 0]
                                   [--num-calib 64] [--out runs/triton-bench] [--workdir DIR]

Needs the Triton extra and the server binary (see README, "Serving with Triton"). Exports
Swin-T 224 (random weights, non-zero biases as in bench_int8_cpu.py) with a dynamic batch,
quantizes it with the cpu recipe, writes one repository with two Python-backend models of the
same INT8 ONNX (`swin_tiny_int8_batched`: dynamic batching, max batch 8, preferred 4 and 8,
2 ms queue delay; `swin_tiny_int8_unbatched`: each request alone), starts tritonserver on
127.0.0.1 and sweeps each with serve-bench (closed loop, 1 image per request), then runs
--soak seconds at the highest concurrency on the batched model. Writes serve-bench
JSON/Markdown/PNG per run, `triton-bench.png` (both sweeps) and `triton-bench.md` (the README
table) into --out. Run it on a quiet machine: every figure is wall-clock throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from swin_edge.calibration import load_images
from swin_edge.export import ExportConfig, torch_to_onnx
from swin_edge.model import create_model
from swin_edge.quantize import QuantRecipe, quantize_onnx
from swin_edge.triton.plan import BatchingConfig, TritonModel
from swin_edge.triton.repository import write_repository
from swin_edge.triton.serve_bench import (
    ServeBenchConfig,
    render_chart,
    serve_bench,
    write_reports,
)
from swin_edge.triton.server import ServerConfig, TritonServer

BATCHED, UNBATCHED = "swin_tiny_int8_batched", "swin_tiny_int8_unbatched"


def build_int8(work: Path, num_calib: int) -> Path:
    model = create_model("swin_tiny")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.02)
    fp32 = torch_to_onnx(model, work / "fp32.onnx", ExportConfig(dynamic_batch=True)).path
    images = load_images(None, model.cfg.preprocess, num_calib).images
    return quantize_onnx(fp32, work / "int8.onnx", images, QuantRecipe(target="cpu")).path


def table(on: dict, off: dict, soak: dict | None) -> str:
    rows = [
        "| concurrency | batching on: img/s | p50 ms | p99 ms | avg batch | "
        "batching off: img/s | p50 ms | p99 ms | failed (on/off) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a, b in zip(on["levels"], off["levels"], strict=True):
        batch = a["server"].get(BATCHED, {}).get("avg_batch")
        rows.append(
            f"| {a['concurrency']} | {a['throughput']:.1f} | {a['latency_ms']['p50']:.1f} | "
            f"{a['latency_ms']['p99']:.1f} | {batch if batch is not None else '-'} | "
            f"{b['throughput']:.1f} | {b['latency_ms']['p50']:.1f} | "
            f"{b['latency_ms']['p99']:.1f} | {a['failed']}/{b['failed']} |"
        )
    env = on["environment"]
    lines = [
        *rows,
        "",
        f"Triton {on['server']['triton_version']} (nvidia-pytriton), Python backend running "
        f"swin_edge's ONNX Runtime runner, 1 instance; {env['cpu']} ({env['cores']} cores); "
        f"{on['server']['protocol']}, {on['settings']['duration_s']:g} s per level after "
        f"{on['settings']['warmup_s']:g} s warm-up, one 224x224 image per request.",
    ]
    if soak is not None:
        (lv,) = soak["levels"]
        lines += [
            "",
            f"Soak: {soak['settings']['duration_s']:g} s at concurrency {lv['concurrency']} "
            f"(batching on): {lv['requests']} requests, **{lv['failed']} failed**, "
            f"{lv['throughput']:.1f} img/s, p50 {lv['latency_ms']['p50']:.1f} ms, "
            f"p99 {lv['latency_ms']['p99']:.1f} ms.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--soak", type=float, default=60.0, help="0: skip the long run")
    ap.add_argument("--protocol", choices=["http", "grpc"], default="grpc")
    ap.add_argument("--threads", type=int, default=0, help="ORT threads per model (0: all)")
    ap.add_argument("--num-calib", type=int, default=64)
    ap.add_argument("--out", default="runs/triton-bench")
    ap.add_argument("--workdir", help="keep the ONNX and repository here")
    args = ap.parse_args()
    levels = tuple(int(c) for c in args.concurrency.split(","))
    out = Path(args.out)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="swin_edge_triton_"))
    work.mkdir(parents=True, exist_ok=True)
    int8 = work / "int8.onnx"
    if not int8.is_file():
        print("export + quantize Swin-T (cpu recipe) ...", flush=True)
        int8 = build_int8(work, args.num_calib)
    repo = work / "repo"
    models = [
        TritonModel(BATCHED, "python", int8, "int8", threads=args.threads),
        TritonModel(
            UNBATCHED, "python", int8, "int8", threads=args.threads, dynamic_batching=False
        ),
    ]
    write_repository(repo, models, BatchingConfig(8, (4, 8), 2000), base_name="swin_tiny")
    reports = {}
    with TritonServer(ServerConfig(repo)) as server:
        url = server.http_url if args.protocol == "http" else server.grpc_url
        runs = [("on", BATCHED, levels, args.duration), ("off", UNBATCHED, levels, args.duration)]
        if args.soak > 0:
            runs.append(("soak", BATCHED, (max(levels),), args.soak))
        for label, model, conc, seconds in runs:
            print(f"{label}: {model}, concurrency {conc}, {seconds:g} s each", flush=True)
            cfg = ServeBenchConfig(
                f"{args.protocol}://{url}",
                model,
                concurrency=conc,
                duration_s=seconds,
                warmup_s=args.warmup,
                max_requests=1_000_000,
            )
            result = serve_bench(cfg, progress=lambda line: print("  " + line, flush=True))
            reports[label] = result.to_dict()
            write_reports(reports[label], out, stem=f"serve-bench-{label}")
    render_chart(
        [("batching on", reports["on"]), ("batching off", reports["off"])],
        out / "triton-bench.png",
    )
    md = table(reports["on"], reports["off"], reports.get("soak"))
    (out / "triton-bench.md").write_text(md)
    (out / "triton-bench.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(md)
    failed = sum(r["failed"] for r in reports.values())
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
