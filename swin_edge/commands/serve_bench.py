"""``serve-bench``: load a local Triton server, report latency and throughput
(:mod:`swin_edge.triton.serve_bench`)."""

from __future__ import annotations

import argparse

from . import common

NAME = "serve-bench"
HELP = "load a local Triton server: latency percentiles and throughput per concurrency"
DESCRIPTION = (
    "Closed-loop load on a Triton model over HTTP or gRPC (tritonclient): for each concurrency, "
    "a warm-up, then --duration seconds measured (at most --max-requests requests), p50/p90/p99 "
    "latency, throughput, failed requests and the server's batch sizes. Writes "
    "serve-bench.json/.md/.png into --out; exit 1 when more than --max-failed requests failed. "
    "Only loopback addresses are accepted."
)


def local_url(text: str) -> str:
    """``type=`` for a loopback [http://|grpc://]HOST[:PORT]."""
    from ..errors import SwinEdgeError
    from ..triton.serve_bench import parse_local_url

    try:
        parse_local_url(text)
    except SwinEdgeError as e:
        raise common.ArgError(str(e).removeprefix(f"--url {text!r}: ")) from None
    return text


def concurrency_list(text: str) -> tuple[int, ...]:
    """``type=`` for a comma-separated list of client counts, e.g. 1,2,4,8."""
    from ..triton.serve_bench import MAX_CONCURRENCY

    parse = common.int_in(1, MAX_CONCURRENCY)
    values = tuple(parse(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise common.ArgError(f"{text!r}: give client counts like 1,2,4,8")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", required=True, type=local_url, help="server on this machine, e.g. 127.0.0.1:8000"
    )
    parser.add_argument("--model", required=True, help="Triton model name")
    parser.add_argument(
        "--protocol", choices=["http", "grpc"], help="default: the URL's scheme, else http"
    )
    parser.add_argument(
        "--concurrency", type=concurrency_list, default=(1, 2, 4, 8), metavar="N,N,..."
    )
    parser.add_argument(
        "--duration", type=common.float_in(0.1, 3600), default=10.0, help="measured s per level"
    )
    parser.add_argument(
        "--warmup", type=common.float_in(0, 3600), default=2.0, help="unmeasured s per level"
    )
    parser.add_argument(
        "--max-requests",
        type=common.int_in(1, 10_000_000),
        default=100_000,
        help="cap per level",
    )
    parser.add_argument(
        "--request-timeout", type=common.float_in(0.1, 600), default=30.0, help="seconds"
    )
    parser.add_argument("--batch", type=common.batch_size, default=1, help="images per request")
    parser.add_argument(
        "--images", type=common.image_dir, help="JPEG/PNG to send (default: bundled photos)"
    )
    parser.add_argument(
        "--max-failed", type=common.int_in(0), default=0, help="failed requests tolerated"
    )
    parser.add_argument(
        "--out", type=common.output_dir, default="runs/serve-bench", help="report folder"
    )


def check(args: argparse.Namespace) -> None:
    from ..errors import SwinEdgeError
    from ..triton.serve_bench import parse_local_url

    try:
        parse_local_url(args.url, args.protocol)
    except SwinEdgeError as e:
        raise common.ArgError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from ..triton.serve_bench import ServeBenchConfig, serve_bench, write_reports

    cfg = ServeBenchConfig(
        url=args.url,
        model=args.model,
        protocol=args.protocol,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        max_requests=args.max_requests,
        request_timeout_s=args.request_timeout,
        batch=args.batch,
        images=args.images,
        max_failed=args.max_failed,
    )
    print(f"serve-bench {cfg.proto}://{cfg.address} model {cfg.model}")
    result = serve_bench(cfg, progress=lambda line: print("  " + line, flush=True))
    paths = write_reports(result.to_dict(), args.out)
    verdict = "PASS" if result.passed else "FAIL"
    print(f"{verdict}: {result.failed} failed requests (allowed {cfg.max_failed})")
    print(f"report: {paths['md']} (+ .json, .png)")
    return 0 if result.passed else 1
