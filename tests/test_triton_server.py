"""A real Triton server (nvidia-pytriton's tritonserver 2.51, Python backend) serving a small
Swin INT8 model through swin_edge's ONNX Runtime runner: HTTP and gRPC answers equal local
inference, the JPEG ensemble equals local preprocessing + inference, concurrent clients are
batched, malformed requests get errors while the server keeps serving. One server for the
module; skipped where the binary is missing or cannot start."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="needs swin_edge[triton]")
pytest.importorskip("tritonclient.http", reason="needs swin_edge[triton]")

import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from swin_edge.backends.onnxrt import OnnxrtRunner, OrtConfig  # noqa: E402
from swin_edge.errors import SwinEdgeError  # noqa: E402
from swin_edge.triton.plan import BatchingConfig, EnsembleConfig, TritonModel  # noqa: E402
from swin_edge.triton.repository import write_repository  # noqa: E402
from swin_edge.triton.server import ServerConfig, TritonServer, tritonserver_problem  # noqa: E402

from .conftest import TINY as CFG  # noqa: E402

MODEL = "tiny_int8_python"
JPEG = "tiny_int8_python_jpeg"
PHOTOS = sorted((Path(__file__).parent.parent / "calibration").glob("*.jpg"))[:3]


@pytest.fixture(scope="module")
def int8_onnx(tmp_path_factory):
    problem = tritonserver_problem()
    if problem:  # before the model is built: nothing here runs without a server
        pytest.skip(f"tritonserver unavailable: {problem}")
    from swin_edge.calibration import load_images
    from swin_edge.export import ExportConfig, torch_to_onnx
    from swin_edge.model import SwinTransformer
    from swin_edge.quantize import QuantRecipe, quantize_onnx

    d = tmp_path_factory.mktemp("triton_model")
    fp32 = torch_to_onnx(
        SwinTransformer(CFG).eval(), d / "m.onnx", ExportConfig(dynamic_batch=True), verify=False
    ).path
    images = load_images(None, CFG.preprocess, 16, use_cache=False).images
    return quantize_onnx(fp32, d / "int8.onnx", images, QuantRecipe(target="cpu")).path


@pytest.fixture(scope="module")
def server(int8_onnx, tmp_path_factory):
    repo = tmp_path_factory.mktemp("triton") / "repo"
    write_repository(
        repo,
        [TritonModel(MODEL, "python", int8_onnx, "int8", threads=1)],
        # a long queue delay makes batching of concurrent requests certain on a busy machine
        BatchingConfig(max_batch_size=8, max_queue_delay_us=50_000),
        ensemble=EnsembleConfig(MODEL, CFG.preprocess),
    )
    srv = TritonServer(ServerConfig(repo, startup_timeout_s=60))
    try:
        srv.start()
    except SwinEdgeError as e:
        pytest.skip(f"tritonserver cannot start here: {e}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local(int8_onnx):
    """Local inference the same way the model runs in Triton (1 thread, lowered INT8)."""
    runner = OnnxrtRunner(int8_onnx, OrtConfig(threads=1))
    runner.activate()
    return runner


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, CFG.img_size, CFG.img_size), dtype=np.float32)


def _http_infer(srv, x, model=MODEL, name="input", dtype="FP32"):
    client = httpclient.InferenceServerClient(srv.http_url)
    inp = httpclient.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    try:
        return client.infer(model, [inp]).as_numpy("logits")
    finally:
        client.close()


def _grpc_infer(srv, x, model=MODEL, name="input", dtype="FP32"):
    client = grpcclient.InferenceServerClient(srv.grpc_url)
    inp = grpcclient.InferInput(name, list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    try:
        return client.infer(model, [inp], client_timeout=30).as_numpy("logits")
    finally:
        client.close()


@pytest.mark.parametrize("infer", [_http_infer, _grpc_infer], ids=["http", "grpc"])
def test_outputs_equal_local_inference(server, local, infer):
    x = _images(3)
    got = infer(server, x)
    want = local.infer(x)
    assert got.shape == (3, CFG.num_classes) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("infer", [_http_infer, _grpc_infer], ids=["http", "grpc"])
def test_jpeg_ensemble_preprocesses_like_calibration(server, local, infer):
    from PIL import Image

    from swin_edge.calibration import preprocess_image

    for photo in PHOTOS:
        data = np.frombuffer(photo.read_bytes(), np.uint8)[None]
        got = infer(server, data, model=JPEG, name="image", dtype="UINT8")
        with Image.open(photo) as img:
            want = local.infer(preprocess_image(img, CFG.preprocess)[None])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _batch_counts(srv) -> dict[int, int]:
    client = httpclient.InferenceServerClient(srv.http_url)
    try:
        (model,) = client.get_inference_statistics(MODEL)["model_stats"]
    finally:
        client.close()
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model["batch_stats"]}


def _settled_counts(srv) -> dict[int, int]:
    """Batch counts once two reads 0.1 s apart agree (a request is counted after its answer)."""
    counts = _batch_counts(srv)
    for _ in range(50):
        time.sleep(0.1)
        again = _batch_counts(srv)
        if again == counts:
            break
        counts = again
    return counts


def test_concurrent_clients_are_batched(server, local):
    before = _settled_counts(server)
    n = 8
    xs = [_images(1, seed=k) for k in range(n)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def client(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[k] = _http_infer(server, xs[k]) if k % 2 else _grpc_infer(server, xs[k])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == n
    for k in range(n):  # each client got its own answer back
        np.testing.assert_allclose(results[k], local.infer(xs[k]), rtol=1e-5, atol=1e-5)
    after = _settled_counts(server)
    new = {b: after[b] - before.get(b, 0) for b in after if after[b] > before.get(b, 0)}
    assert sum(b * c for b, c in new.items()) == n
    assert max(new) > 1, f"no request was batched: {new}"


BAD_REQUESTS = {
    "wrong shape": lambda: ("input", np.zeros((1, 3, 32, 32), np.float32), "FP32"),
    "wrong dtype": lambda: ("input", np.zeros((1, 3, 64, 64), np.float64), "FP64"),
    "missing input": lambda: ("bogus", np.zeros((1, 3, 64, 64), np.float32), "FP32"),
    "batch too large": lambda: ("input", np.zeros((9, 3, 64, 64), np.float32), "FP32"),
}


@pytest.mark.parametrize("infer", [_http_infer, _grpc_infer], ids=["http", "grpc"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_requests_fail_and_the_server_keeps_serving(server, local, infer, case):
    name, x, dtype = BAD_REQUESTS[case]()
    with pytest.raises(InferenceServerException) as err:
        infer(server, x, name=name, dtype=dtype)
    assert err.value.message()
    good = _images(1, seed=7)
    np.testing.assert_allclose(infer(server, good), local.infer(good), rtol=1e-5, atol=1e-5)
    assert server.alive()


@pytest.mark.parametrize("infer", [_http_infer, _grpc_infer], ids=["http", "grpc"])
def test_an_image_that_does_not_decode_fails_only_its_request(server, infer):
    junk = np.frombuffer(b"definitely not a jpeg", np.uint8)[None]
    with pytest.raises(InferenceServerException, match="not a readable JPEG/PNG"):
        infer(server, junk, model=JPEG, name="image", dtype="UINT8")
    ok = np.frombuffer(PHOTOS[0].read_bytes(), np.uint8)[None]
    assert infer(server, ok, model=JPEG, name="image", dtype="UINT8").shape == (1, 10)
    assert server.alive()


def test_a_model_that_fails_to_load_is_a_clear_error(server, tmp_path):
    """A repository whose model cannot load: start() raises quoting Triton's log, and leaves
    no process behind."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    repo = tmp_path / "repo"
    import shutil

    shutil.copytree(Path(server.config.repository), repo)
    model_dir = repo / MODEL / "1"
    (model_dir / "model.onnx").write_bytes(b"not onnx")
    srv = TritonServer(ServerConfig(repo, startup_timeout_s=60))
    with pytest.raises(SwinEdgeError, match="tritonserver exited") as err:
        srv.start()
    assert MODEL in str(err.value)
    assert srv.proc is None and not srv.alive()
    assert "failed to load" in srv.log_text()
    assert not list(Path("/dev/shm").glob(f"{srv.shm_prefix}*"))


def test_stop_removes_the_shared_memory_even_after_the_exit_timeout(int8_onnx, tmp_path):
    """An idle keep-alive HTTP connection uses up Triton's exit timeout, so it exits without
    unloading the Python models; stop() still leaves no shared-memory region behind."""
    repo = tmp_path / "repo"
    write_repository(repo, [TritonModel(MODEL, "python", int8_onnx, threads=1)])
    srv = TritonServer(ServerConfig(repo, startup_timeout_s=60, stop_timeout_s=2))
    try:
        srv.start()
    except SwinEdgeError as e:
        pytest.skip(f"tritonserver cannot start here: {e}")
    assert list(Path("/dev/shm").glob(f"{srv.shm_prefix}*"))
    client = httpclient.InferenceServerClient(srv.http_url)
    assert client.is_server_live()  # the connection stays open
    srv.stop()
    client.close()
    assert not list(Path("/dev/shm").glob(f"{srv.shm_prefix}*"))
