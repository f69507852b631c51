"""The web demo's guards, in process: request bodies bounded while they stream in (counted at the ASGI
interface), a bounded work pool, nothing process-wide changed per request, JPEG draft decoding, sampling on the
model's device, the package holding only the server, and the API fuzzed from its own OpenAPI description."""

import asyncio
import io
import json
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from serve_checkpoints import shared_checkpoints

from mllm.data.images import load_image
from mllm.language.decoding import sample
from mllm.serve.app import create_app
from mllm.serve.images import decode, read_upload
from mllm.serve.limits import MULTIPART_SLACK, Limits, cores
from mllm.serve.models import DemoModels
from mllm.serve.text import TextModel
from mllm.serve.work import WorkPool

LIMITS = dict(max_upload_bytes=1_000_000, max_prompt_chars=200, max_length=100, workers=1, queue=1, threads=1)
CHUNK = 65536  # what a server hands the app per message, about
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def served(tmp_path_factory, mirror):
    flickr, checkpoints = shared_checkpoints(tmp_path_factory, mirror)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `serve --threads 1` would: models this small gain nothing from more
    models = DemoModels(checkpoints["mllm"], checkpoints["rl"], checkpoints["gpt"], limits=Limits(**LIMITS))
    app = create_app(models)
    yield {"flickr": flickr, "checkpoints": checkpoints, "models": models, "app": app, "pool": app.state.pool}
    app.state.pool.shutdown()
    torch.set_num_threads(threads)


def call(app, method: str, path: str, chunks: list[bytes], headers: dict[str, str]) -> dict:
    """One request straight through the ASGI interface: the status, headers, body, and how many body bytes the
    app pulled (`read`)."""
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    state = {"read": 0, "status": None, "headers": {}, "body": b""}

    async def receive() -> dict:
        if messages:
            message = messages.pop(0)
            state["read"] += len(message["body"])
            return message
        await asyncio.sleep(3600)  # a client that sent everything waits for the answer

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
            state["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            state["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    return state


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "serveTestBoundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def chunks_of(body: bytes) -> list[bytes]:
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]


# ---- body limits -------------------------------------------------------------------------------------------

def test_an_upload_without_a_declared_size_is_read_only_up_to_the_limit(served):
    body, content_type = multipart("huge.jpg", bytes(30_000_000))  # 30 MB, chunked: no Content-Length
    got = call(served["app"], "POST", "/api/caption", chunks_of(body), {"content-type": content_type})
    assert got["status"] == 413, got["body"][:300]
    limit = LIMITS["max_upload_bytes"] + MULTIPART_SLACK
    assert limit < got["read"] <= limit + CHUNK  # stopped at the first message past the limit, not at 30 MB
    detail = json.loads(got["body"])["detail"]
    assert "over the limit of 1.00 MB" in detail and "not declared" in detail
    assert f"stopped reading it after {got['read'] / 1e6:.2f} MB" in detail  # the size it reports is what it read


def test_a_declared_size_over_the_limit_is_refused_before_the_body_is_read(served):
    body, content_type = multipart("huge.jpg", bytes(30_000_000))
    got = call(served["app"], "POST", "/api/caption", chunks_of(body),
               {"content-type": content_type, "content-length": str(len(body))})
    assert got["status"] == 413 and got["read"] == 0
    assert f"the upload is {len(body) / 1e6:.2f} MB, over the limit of 1.00 MB" in json.loads(got["body"])["detail"]


@pytest.mark.parametrize("declared", [False, True])
def test_a_large_json_body_is_refused_while_it_streams_in(served, declared):
    body = json.dumps({"prompt": "ROMEO:", "pad": "x" * 20_000_000}).encode()  # 20 MB
    headers = {"content-type": "application/json", **({"content-length": str(len(body))} if declared else {})}
    got = call(served["app"], "POST", "/api/generate", chunks_of(body), headers)
    assert got["status"] == 413, got["body"][:300]
    limit = served["models"].limits.max_json_bytes
    assert got["read"] == 0 if declared else limit < got["read"] <= limit + CHUNK
    detail = json.loads(got["body"])["detail"]
    assert f"over the limit of {limit:,} bytes for /api/generate" in detail
    assert (f"is {len(body):,} bytes" if declared else "not declared") in detail


def test_bodies_within_the_limits_are_answered(served):
    name = served["flickr"]["test"][0]
    body, content_type = multipart(name, served["flickr"]["bytes"][name])
    got = call(served["app"], "POST", "/api/caption", chunks_of(body), {"content-type": content_type})
    assert got["status"] == 200 and got["read"] == len(body) and json.loads(got["body"])["captions"]["scst"]["beam"]
    body = json.dumps({"prompt": "ROMEO:", "length": 40, "temperature": 0}).encode()
    got = call(served["app"], "POST", "/api/generate", [body], {"content-type": "application/json"})
    assert got["status"] == 200 and len(got["body"].decode()) == 40


# ---- bounded work ------------------------------------------------------------------------------------------

def test_a_full_queue_is_answered_503_with_retry_after_and_a_freed_place_is_used(served):
    pool, app = served["pool"], served["app"]
    body = json.dumps({"prompt": "ROMEO:", "length": 5}).encode()
    taken = [pool.admit() for _ in range(pool.capacity)]  # every worker and queue place held
    try:
        assert all(taken) and not pool.admit()
        got = call(app, "POST", "/api/generate", [body], {"content-type": "application/json"})
        assert got["status"] == 503 and got["headers"]["retry-after"] == "1" and got["read"] == 0
        assert "--queue" in json.loads(got["body"])["detail"]
        assert call(app, "GET", "/api/info", [b""], {})["status"] == 200  # the page and info still answer
    finally:
        for _ in taken:
            pool.release()
    assert call(app, "POST", "/api/generate", [body], {"content-type": "application/json"})["status"] == 200
    assert pool.admitted == 0


def test_the_work_pool_runs_at_most_its_workers_at_once():
    pool, running, peak, lock = WorkPool(2, 4), [0], [0], threading.Lock()

    def job() -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return threading.current_thread().name

    async def many() -> list[str]:
        return await asyncio.gather(*(pool.run(job) for _ in range(6)))

    names = asyncio.run(many())
    pool.shutdown()
    assert peak[0] == 2 and all(n.startswith("model") for n in names)
    fresh = WorkPool(2, 4)
    assert [fresh.admit() for _ in range(7)] == [True] * 6 + [False]
    fresh.shutdown()


def test_torch_threads_share_the_cores_among_the_workers():
    assert Limits(workers=2).threads == max(1, cores() // 2) and Limits(workers=1, threads=3).threads == 3
    assert Limits(workers=cores() + 1).threads == 1


def test_a_request_changes_no_process_wide_state(served):
    entered, original = [], warnings.catch_warnings

    def watched(*args, **kwargs):  # warnings.catch_warnings swaps the process's filters, for every thread
        entered.append(threading.current_thread().name)
        return original(*args, **kwargs)

    filters, threads = list(warnings.filters), torch.get_num_threads()
    warnings.catch_warnings = watched
    try:
        for name in served["flickr"]["test"][:2]:
            assert len(served["models"].caption(served["flickr"]["bytes"][name], name)["captions"]) == 2
    finally:
        warnings.catch_warnings = original
    assert not entered and warnings.filters == filters and torch.get_num_threads() == threads


# ---- images ------------------------------------------------------------------------------------------------

def test_a_large_jpeg_is_decoded_at_reduced_size(served):
    photo = Image.open(io.BytesIO(served["flickr"]["bytes"][served["flickr"]["test"][0]])).resize((4000, 3000))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    assert decode(buffer.getvalue(), "big.jpg", 32, 10**8).size == (500, 375)  # DCT-scaled by 8, >= 64 a side
    start = time.perf_counter()
    read_upload(buffer.getvalue(), "big.jpg", 32, 10**8)
    assert time.perf_counter() - start < 1.0


def test_read_upload_matches_the_projects_image_reader(served, tmp_path):
    jpeg = served["flickr"]["bytes"][served["flickr"]["test"][1]]
    (tmp_path / "a.jpg").write_bytes(jpeg)
    full = load_image(tmp_path / "a.jpg", 32).astype(int)
    assert np.abs(read_upload(jpeg, "a.jpg", 32, 10**8).astype(int) - full).mean() < 2.0  # within DCT rounding
    Image.open(io.BytesIO(jpeg)).save(tmp_path / "a.png")
    png = (tmp_path / "a.png").read_bytes()
    assert np.array_equal(read_upload(png, "a.png", 32, 10**8), load_image(tmp_path / "a.png", 32))  # exact


# ---- sampling on the model's device ------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_sampling_draws_where_the_generator_lives(device):
    logits = torch.randn(3, 50, device=device)
    for generator in (torch.Generator(device=device), torch.Generator()):  # the model's device, or the CPU
        ids = sample(logits, 0.9, top_k=10, generator=generator.manual_seed(1))
        assert ids.shape == (3, 1) and ids.device == logits.device
        assert torch.equal(ids, sample(logits, 0.9, top_k=10, generator=generator.manual_seed(1)))


@pytest.mark.parametrize("device", DEVICES)
def test_text_streams_on_any_device(served, device):
    text = TextModel(served["checkpoints"]["gpt"], device, Limits(**LIMITS))
    stream = text.start("ROMEO:", 40, 0.9, seed=3)
    assert stream.generator.device.type == device
    out = "".join(stream.step(n) for n in (16, 16, 8))
    assert len(out) == 40 and set(out) <= set(text.known)
    again = text.start("ROMEO:", 40, 0.9, seed=3)
    assert "".join(again.step(n) for n in (16, 16, 8)) == out


# ---- the package -------------------------------------------------------------------------------------------

def test_the_runtime_package_holds_the_server_only():
    package = Path(__file__).resolve().parents[1] / "mllm" / "serve"
    for path in package.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) <= 300, path
        assert not re.search(r"^\s*(import|from) (selenium|httpx)\b", source, re.M), path  # test tools live in tests/


# ---- the API fuzzed from its own description ---------------------------------------------------------------

def test_the_api_fuzzed_from_its_openapi_description(served):
    """Schemathesis generates requests from /openapi.json, valid and invalid (property-based, a bounded number):
    no 5xx, no status, type or body the description does not list, every invalid request refused, no empty
    200, and the app serves normally afterwards."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    @schemathesis.check
    def not_an_empty_success(ctx, response, case) -> None:
        if response.status_code == 200 and not response.content:
            raise AssertionError(f"an empty 200 for {case.method} {case.path}")

    @schemathesis.check
    def valid_text_requests_are_answered(ctx, response, case) -> None:  # the description promises no more
        if case.path == "/api/generate" and case.meta.generation.mode.is_positive and response.status_code != 200:
            raise AssertionError(f"{case.body!r} follows the description, yet: {response.text[:300]}")

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              negative_data_rejection, not_an_empty_success, valid_text_requests_are_answered]
    schema = schemathesis.openapi.from_asgi("/openapi.json", served["app"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/api/info", "/api/caption", "/api/generate"}
    start = time.perf_counter()
    for op in operations:
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.method == "post" else [])  # info: no input
        for mode in modes:
            @settings(max_examples=50, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def fuzz(case) -> None:
                case.call_and_validate(checks=checks)

            fuzz()
    assert time.perf_counter() - start < 60
    assert served["pool"].admitted == 0  # every request let go of its place
    body = json.dumps({"prompt": "ROMEO:", "length": 5}).encode()
    assert call(served["app"], "POST", "/api/generate", [body], {"content-type": "application/json"})["status"] == 200
