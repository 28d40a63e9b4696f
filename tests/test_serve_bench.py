"""serve-bench: loopback-only URLs, bounded settings, the report formats, and a short real
sweep against a local Triton server (skipped where it cannot start)."""

import argparse
import json

import numpy as np
import pytest

from swin_edge.commands import serve_bench as command
from swin_edge.errors import SwinEdgeError
from swin_edge.triton.serve_bench import (
    LevelResult,
    ServeBenchConfig,
    _stats_delta,
    parse_local_url,
    render_chart,
    render_markdown,
    write_reports,
)

from .conftest import MICRO as CFG


@pytest.mark.parametrize(
    "url,want",
    [
        ("127.0.0.1:8000", ("127.0.0.1:8000", "http")),
        ("http://127.0.0.1", ("127.0.0.1:8000", "http")),
        ("grpc://127.0.0.1", ("127.0.0.1:8001", "grpc")),
        ("grpc://127.5.6.7:9001/", ("127.5.6.7:9001", "grpc")),
        ("localhost:8000", ("localhost:8000", "http")),
        ("[::1]:8001", ("[::1]:8001", "http")),
    ],
)
def test_local_urls(url, want):
    assert parse_local_url(url) == want


@pytest.mark.parametrize(
    "url,match",
    [
        ("10.0.0.5:8000", "loopback"),
        ("192.168.1.2:8000", "loopback"),
        ("8.8.8.8:8001", "loopback"),
        ("example.com:8000", "loopback"),
        ("0.0.0.0:8000", "loopback"),
        ("https://127.0.0.1:8000", "http://HOST:PORT or grpc://"),
        ("127.0.0.1:99999", "out of range"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:8000/v2/models", "no path"),
    ],
)
def test_other_urls_are_refused(url, match):
    with pytest.raises(SwinEdgeError, match=match):
        parse_local_url(url)


def test_settings_are_bounded():
    with pytest.raises(SwinEdgeError, match="concurrency"):
        ServeBenchConfig("127.0.0.1:8000", "m", concurrency=(0,))
    with pytest.raises(SwinEdgeError, match="duration"):
        ServeBenchConfig("127.0.0.1:8000", "m", duration_s=7200)
    with pytest.raises(SwinEdgeError, match="max-requests"):
        ServeBenchConfig("127.0.0.1:8000", "m", max_requests=0)
    with pytest.raises(SwinEdgeError, match="is grpc but --protocol is http"):
        ServeBenchConfig("grpc://127.0.0.1:8001", "m", protocol="http")


def test_command_refuses_remote_urls_at_parse_time(capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--url", "10.1.2.3:8000", "--model", "m"])
    assert "loopback" in capsys.readouterr().err
    args = parser.parse_args(["--url", "127.0.0.1:1", "--model", "m", "--concurrency", "1,3"])
    assert args.concurrency == (1, 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--url", "127.0.0.1:1", "--model", "m", "--concurrency", "0"])


def test_unreachable_server_is_one_clear_error(tmp_path):
    pytest.importorskip("tritonclient.http", reason="needs swin_edge[triton]")
    from swin_edge.triton.serve_bench import serve_bench
    from swin_edge.triton.server import free_port

    cfg = ServeBenchConfig(f"127.0.0.1:{free_port()}", "m", duration_s=1, request_timeout_s=2)
    with pytest.raises(SwinEdgeError, match="cannot query model 'm'"):
        serve_bench(cfg)


def test_stats_delta_counts_only_the_window():
    before = {"m": {"inferences": 10, "executions": 10, "batches": {1: 10}}}
    after = {
        "m": {"inferences": 26, "executions": 14, "batches": {1: 12, 4: 2, 6: 0}},
        "idle": {"inferences": 0, "executions": 0, "batches": {}},
    }
    assert _stats_delta(before, after) == {
        "m": {"executions": 4, "inferences": 16, "avg_batch": 4.0, "batch_sizes": {"1": 2, "4": 2}}
    }


def _report(failed: int = 0) -> dict:
    from swin_edge.triton.serve_bench import ServeBenchResult

    cfg = ServeBenchConfig("127.0.0.1:8000", "m", concurrency=(1, 2), duration_s=1)
    rng = np.random.default_rng(0)
    levels = [
        LevelResult(
            c,
            1.0,
            list(rng.uniform(5, 9, 50 * c)),
            failed,
            ["InferenceServerException: boom"] if failed else [],
            1,
            {"m": {"executions": 10, "inferences": 20, "avg_batch": 2.0, "batch_sizes": {"2": 10}}},
        )
        for c in (1, 2)
    ]
    mc = {"max_batch_size": 8, "dynamic_batching": {}, "backend": "python"}
    info = {"kind": "images", "batch": 1}
    return ServeBenchResult(cfg, levels, mc, info, "2.51.0").to_dict()


def test_reports_json_markdown_png(tmp_path):
    report = _report()
    lv = report["levels"][1]
    assert lv["requests"] == 100 and lv["throughput"] == pytest.approx(100.0)
    assert 5 <= lv["latency_ms"]["p50"] <= lv["latency_ms"]["p90"] <= lv["latency_ms"]["p99"] <= 9
    md = render_markdown(report)
    assert (
        "| 2 | 100 | 0 | 100.0 |" in md and "PASS: 0 failed" in md and "dynamic batching on" in md
    )
    paths = write_reports(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["format"] == "swin_edge.serve-bench/1"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    two = render_chart([("on", report), ("off", _report())], tmp_path / "two.png")
    assert two.stat().st_size > 0
    failing = _report(failed=3)
    assert not failing["passed"] and failing["failed"] == 6
    assert "FAIL: 6 failed" in render_markdown(failing) and "boom" in render_markdown(failing)


# -- a short real sweep --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("tritonclient.grpc", reason="needs swin_edge[triton]")
    from swin_edge.export import ExportConfig, torch_to_onnx
    from swin_edge.model import SwinTransformer
    from swin_edge.triton.plan import BatchingConfig, EnsembleConfig, TritonModel
    from swin_edge.triton.repository import write_repository
    from swin_edge.triton.server import ServerConfig, TritonServer, tritonserver_problem

    problem = tritonserver_problem()
    if problem:
        pytest.skip(f"tritonserver unavailable: {problem}")
    d = tmp_path_factory.mktemp("serve_bench")
    onnx = torch_to_onnx(
        SwinTransformer(CFG).eval(), d / "m.onnx", ExportConfig(dynamic_batch=True), verify=False
    ).path
    repo = d / "repo"
    write_repository(
        repo,
        [TritonModel("micro", "python", onnx, threads=1)],
        BatchingConfig(max_batch_size=4, max_queue_delay_us=5000),
        ensemble=EnsembleConfig("micro", CFG.preprocess),
    )
    srv = TritonServer(ServerConfig(repo, startup_timeout_s=60))
    try:
        srv.start()
    except SwinEdgeError as e:
        pytest.skip(f"tritonserver cannot start here: {e}")
    yield srv
    srv.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sweep_against_a_real_server(server, protocol):
    from swin_edge.triton.serve_bench import serve_bench

    url = server.http_url if protocol == "http" else server.grpc_url
    cfg = ServeBenchConfig(
        f"{protocol}://{url}",
        "micro",
        concurrency=(1, 3),
        duration_s=1.0,
        warmup_s=0.2,
        max_requests=400,
        batch=2,
    )
    res = serve_bench(cfg)
    assert res.passed and res.failed == 0
    assert [lv.concurrency for lv in res.levels] == [1, 3]
    for lv in res.levels:
        assert 0 < lv.requests <= 400 and lv.seconds < 1.0 + cfg.request_timeout_s
        own = lv.server["micro"]  # batch 2 per request (the server counts a moment late)
        assert own["inferences"] % 2 == 0
        assert abs(own["inferences"] - 2 * lv.requests) <= 2 * lv.concurrency
    report = res.to_dict()
    assert report["server"]["max_batch_size"] == 4 and report["server"]["dynamic_batching"]
    assert report["input"]["kind"] == "images" and report["input"]["batch"] == 2


def test_command_runs_a_jpeg_sweep_and_writes_reports(server, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--url",
            f"grpc://{server.grpc_url}",
            "--model",
            "micro_jpeg",
            "--concurrency",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--max-requests",
            "50",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    command.check(args)
    assert command.run(args) == 0
    out = capsys.readouterr().out
    assert "PASS: 0 failed" in out
    report = json.loads((tmp_path / "out" / "serve-bench.json").read_text())
    (level,) = report["levels"]
    assert report["input"]["kind"] == "encoded images" and level["failed"] == 0
    assert 0 < level["requests"] <= 50
    assert set(level["server"]) >= {"micro_jpeg", "micro_preprocess", "micro"}
    assert (tmp_path / "out" / "serve-bench.png").is_file()


def test_failed_requests_are_counted_and_fail_the_command(server, tmp_path, capsys):
    """Images that do not decode: every request fails, is counted with its message, and the
    command exits 1; the server keeps serving. The request cap, not the clock, ends the level
    (a loaded CI host once answered only 2 failing requests in a 0.5 s window)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg at all")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(
        ["--url", server.http_url, "--model", "micro_jpeg", "--concurrency", "2"]
        + ["--duration", "60", "--warmup", "0", "--max-requests", "20"]
        + ["--images", str(bad), "--out", str(tmp_path / "out")]
    )
    assert command.run(args) == 1
    assert "FAIL: 20 failed" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "serve-bench.json").read_text())
    (level,) = report["levels"]
    assert level["failed"] == level["requests"] == 20 and level["latency_ms"]["p50"] is None
    assert "not a readable JPEG/PNG" in level["errors"][0]
    assert "FAIL: 20 failed" in (tmp_path / "out" / "serve-bench.md").read_text()
    assert server.alive()
