"""The web demo (`python main.py serve`) with tiny checkpoints trained here on real Flickr8k and Tiny Shakespeare
data: the API's captions equal the captioners' own, text streams, every bad input is a 4xx naming the problem
and the fix while the server goes on serving, a load test over distinct images, a burst past the queue, and
headless Chromium driving the page. Body limits and the fuzzing of the API: tests/test_serve_guards.py."""

import base64
import io
import os
import re

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from serve_checkpoints import shared_checkpoints
from tools.serve_loadtest import burst, caption_load, reference_answers
from tools.serve_process import ServerFailed, running_server

from mllm.cli import main
from mllm.language.gpt import load_gpt
from mllm.multimodal.mllm import load_captioner
from mllm.serve.images import read_upload

UPLOAD_MB = 1.0  # the server under test refuses uploads over 1 MB
MAX_PROMPT = 200
WORKERS, QUEUE = 2, 8  # room for the load test's 8 clients; a burst of 40 is past it
SERVER_OPTIONS = ["--max-upload-mb", str(UPLOAD_MB), "--max-prompt-chars", str(MAX_PROMPT), "--max-length", "500",
                  "--workers", str(WORKERS), "--queue", str(QUEUE), "--threads", "1"]


@pytest.fixture(scope="module")
def flickr(tmp_path_factory, mirror):
    return shared_checkpoints(tmp_path_factory, mirror)[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, mirror):
    return shared_checkpoints(tmp_path_factory, mirror)[1]


@pytest.fixture(scope="module")
def server(checkpoints, tmp_path_factory):
    """`python main.py serve` with the tiny checkpoints on a free port of 127.0.0.1; its base URL."""
    try:
        with running_server(checkpoints, tmp_path_factory.mktemp("serve-log") / "serve.log", SERVER_OPTIONS) as url:
            yield url
    except ServerFailed as e:
        pytest.fail(str(e))


def _caption(url: str, data: bytes, name: str = "image.jpg") -> httpx.Response:
    return httpx.post(url + "/api/caption", files={"file": (name, data)}, timeout=60)


def still_serving(url: str, flickr) -> None:
    assert httpx.get(url + "/api/info", timeout=10).status_code == 200
    assert _caption(url, flickr["bytes"][flickr["test"][0]]).status_code == 200
    assert httpx.post(url + "/api/generate", json={"prompt": "ROMEO:", "length": 5}, timeout=30).status_code == 200


# ---- the command -------------------------------------------------------------------------------------------

def test_missing_checkpoints_name_the_command_that_trains_them(tmp_path, checkpoints, capsys):
    assert main(["serve", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for command in ("python main.py train-mllm --preset cpu", "python main.py train-rl --preset cpu",
                    "python main.py train-llm --preset cpu", "--mllm", "--rl", "--gpt", str(tmp_path / "rl-cpu")):
        assert command in err
    assert main(["serve", "--runs", str(tmp_path), "--mllm", str(checkpoints["mllm"]),
                 "--gpt", str(checkpoints["gpt"])]) == 2
    err = capsys.readouterr().err
    assert err.count("no checkpoint at") == 1 and f"no checkpoint at {tmp_path / 'rl-cpu' / 'best.pt'}" in err


# ---- the API -----------------------------------------------------------------------------------------------

def test_captions_equal_the_captioners_own_and_the_attention_is_a_distribution(server, checkpoints, flickr):
    name = flickr["test"][0]
    response = _caption(server, flickr["bytes"][name], name)
    assert response.status_code == 200, response.text
    got = response.json()
    seen = torch.from_numpy(read_upload(flickr["bytes"][name], name, 32, 10**8).copy())[None]
    for api_name, key in (("supervised", "mllm"), ("scst", "rl")):
        model, tok = load_captioner(checkpoints[key])
        for strategy in ("greedy", "beam"):
            ids, att = model.generate(seen, strategy=strategy, attention=True, **model.decoding)
            expected = tok.decode(ids[0])
            assert got["captions"][api_name][strategy] == expected and expected
            words = got["word_attention"][api_name][strategy]  # one map per word, from the same decoding
            assert [w["word"] for w in words] == expected.split()
            side = int(model.num_image_tokens ** 0.5)
            for j, w in enumerate(words):
                grid = np.array(w["map"])
                assert grid.shape == (side, side) and abs(grid.sum() - 1) < 1e-3 and w["png"].startswith("data:")
                assert np.allclose(grid.ravel(), att.combined[0, j].numpy(), atol=1e-4)
        grid = np.array(got["attention"][api_name])
        assert grid.shape == (4, 4) and (grid >= 0).all() and 0.1 < grid.sum() <= 1 + 1e-4
    assert got["captions"]["supervised"] != got["captions"]["scst"]  # two different models
    shown = Image.open(io.BytesIO(base64.b64decode(got["model_input_png"].split(",", 1)[1])))
    assert shown.size == (32, 32) and np.array_equal(np.asarray(shown.convert("RGB")), seen[0].numpy())


@pytest.mark.parametrize("fmt, mode, size", [("PNG", "RGBA", (640, 480)), ("GIF", "P", (200, 300)),
                                             ("BMP", "RGB", (300, 200)), ("WEBP", "RGB", (500, 375)),
                                             ("TIFF", "RGB", (90, 60)), ("JPEG", "L", (1200, 900))])
def test_any_common_format_mode_and_size(server, flickr, fmt, mode, size):
    image = Image.open(io.BytesIO(flickr["bytes"][flickr["test"][1]])).resize(size).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    response = _caption(server, buffer.getvalue(), f"upload.{fmt.lower()}")
    assert response.status_code == 200, response.text
    assert all(response.json()["captions"][m]["beam"] for m in ("supervised", "scst"))


def test_openapi_description_and_no_internet_assets(server):
    spec = httpx.get(server + "/openapi.json").json()
    assert {"/api/caption", "/api/generate", "/api/info"} <= set(spec["paths"])
    assert {"413", "415", "503"} <= set(spec["paths"]["/api/caption"]["post"]["responses"])
    assert httpx.get(server + "/docs").status_code == 404  # FastAPI's /docs would load swagger from a CDN
    info = httpx.get(server + "/api/info").json()
    assert info["image_size"] == 32 and info["limits"]["max_upload_bytes"] == UPLOAD_MB * 1e6
    assert (info["limits"]["workers"], info["limits"]["queue"], info["limits"]["threads"]) == (WORKERS, QUEUE, 1)
    assert info["same_vit"] is False  # the two tiny captioners were trained apart
    page = httpx.get(server + "/").text
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page and httpx.get(server + asset).status_code == 200
    for text in [page] + [httpx.get(server + a).text for a in ("/static/app.js", "/static/style.css")]:
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_generation_streams_and_greedy_equals_the_gpt(server, checkpoints):
    body = {"prompt": "ROMEO:", "length": 300, "temperature": 0.9, "seed": 3}
    with httpx.stream("POST", server + "/api/generate", json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        chunks = list(response.iter_text())
    gpt, chars = load_gpt(checkpoints["gpt"])
    text = "".join(chunks)
    assert len(chunks) > 1 and len(text) == 300 and set(text) <= set(chars.chars)
    again = httpx.post(server + "/api/generate", json=body, timeout=60).text
    assert again == text  # the seed decides the sample
    greedy = {"prompt": "ROMEO:", "length": 20, "temperature": 0}  # within the context: as GPT.generate
    got = httpx.post(server + "/api/generate", json=greedy, timeout=60).text
    expected = chars.decode(gpt.generate(chars.encode_tensor("ROMEO:")[None], 20, 0.0)[0, 6:])
    assert got == expected


# ---- bad input ---------------------------------------------------------------------------------------------

def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (7000, 6000)).save(buffer, format="PNG")  # 42 million pixels in a few kB
    return buffer.getvalue()


def test_bad_uploads_are_4xx_with_the_reason_and_the_server_goes_on(server, flickr):
    jpeg = flickr["bytes"][flickr["test"][0]]
    cases = [(b"just some notes, not a picture", "notes.txt", 415, ["not an image", "PNG, JPEG"]),
             (jpeg[:300], "cut.jpg", 415, ["not an image"]),
             (b"", "empty.png", 422, ["empty"]),
             (os.urandom(int(UPLOAD_MB * 1e6) + 100_000), "huge.jpg", 413, ["the upload is 1.10 MB",
                                                                             "over the limit of 1.00 MB",
                                                                             "--max-upload-mb"]),
             (os.urandom(int(UPLOAD_MB * 1e6) + 10), "just-over.jpg", 413, ["the upload is 1.00 MB, over"]),
             (_bomb(), "bomb.png", 413, ["7000x6000 pixels", "downscale"])]
    for data, name, status, words in cases:
        response = _caption(server, data, name)
        assert response.status_code == status, (name, response.text)
        detail = response.json()["detail"]
        assert all(w in detail for w in words), detail
        assert "/tmp" not in detail  # the server's own paths stay private
    # over a real socket too: a 30 MB upload without a Content-Length (chunked) is answered 413, not read in full
    boundary = "serveTestBoundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    parts = iter([head] + [bytes(65536)] * 460 + [f"\r\n--{boundary}--\r\n".encode()])
    response = httpx.post(server + "/api/caption", content=parts, timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    read = re.search(r"stopped reading it after ([\d.]+) MB", response.json()["detail"])
    assert response.status_code == 413 and read, response.text
    assert 1.0 < float(read[1]) < 3.0  # the limit and what the server's socket had buffered, not the 30 MB
    response = httpx.post(server + "/api/caption", data={"other": "x"}, timeout=60)
    assert response.status_code == 422 and "file is missing" in response.json()["detail"]
    still_serving(server, flickr)


@pytest.mark.parametrize("body, words", [
    ({"prompt": ""}, ["prompt is empty", "type a few characters"]),
    ({"prompt": "A" * (MAX_PROMPT + 1)}, [f"{MAX_PROMPT + 1} characters long", "over the limit", "shorten it"]),
    ({"prompt": "ROMEO: caf\u00e9 \u4f60\u597d\t"}, ["does not know", "'\u00e9'", "'\u4f60'", "'\\t'",
                                                      "remove or replace them"]),
    ({"prompt": "ROMEO:", "length": 0}, ["length 0 is out of range", "1 to 500"]),
    ({"prompt": "ROMEO:", "length": 10**6}, ["out of range"]),
    ({"prompt": "ROMEO:", "temperature": -1}, ["temperature -1.0 is out of range", "0 (greedy)"]),
    ({"prompt": "ROMEO:", "seed": 10**23}, [f"seed {10**23} is out of range", "0 to 9223372036854775807"]),
    ({"prompt": "ROMEO:", "seed": -1}, ["seed -1 is out of range"]),
    ({"prompt": "ROMEO:", "length": "long"}, ["length", "integer"]),
    ({"prompt": "ROMEO:", "length": "5"}, ["length", "integer"]),  # strict: a string is not a number
    ({"prompt": "ROMEO:", "lenght": 5}, ["lenght is not a field", "/openapi.json"]),
    ({"length": 5}, ["prompt is missing"]),
    (["ROMEO:"], ["not a JSON object"]),
    ('{"prompt": "ROMEO:", "temperature": NaN}', ["temperature nan is out of range"]),
    ("{'prompt': 'ROMEO:'", ["not valid JSON", '{"prompt": "ROMEO:"']),
])
def test_bad_prompts_are_422_naming_the_problem_and_the_fix(server, body, words):
    if isinstance(body, str):  # a body that is not JSON
        response = httpx.post(server + "/api/generate", content=body, headers={"Content-Type": "application/json"},
                              timeout=30)
    else:
        response = httpx.post(server + "/api/generate", json=body, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert all(w in detail for w in words), detail
    assert httpx.post(server + "/api/generate", json={"prompt": "ROMEO:", "length": 5}, timeout=30).status_code == 200


# ---- load ------------------------------------------------------------------------------------------------

def test_load_from_8_clients_over_distinct_images_gets_each_image_its_own_answer(server, flickr):
    images = {name: flickr["bytes"][name] for name in flickr["test"]}
    expected = reference_answers(server, images)  # each image alone
    captions = {key.split('"model_input_png"')[0] for key in expected.values()}  # answers without the image
    assert len(captions) > len(images) // 2  # distinct images, distinct answers: a swap would show
    result = caption_load(server, images, expected, requests=8 * 25, concurrency=8)
    print(f"\nload test: {result['requests']} caption requests over {result['distinct_images']} images, "
          f"{result['concurrency']} clients: {result['requests_per_s']} requests/s, p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms")
    assert result["requests"] == 200 and result["errors"] == 0, result["error_samples"]
    assert result["mismatches"] == 0, result["mismatch_samples"]  # no cross-talk between concurrent requests


def test_a_burst_past_the_queue_gets_503_at_once_and_the_server_serves_after(server, flickr):
    n = 40
    results = burst(server, n, {"prompt": "ROMEO:", "length": 500, "temperature": 0.8})
    ok = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    assert len(ok) + len(refused) == n, {r["status"] for r in results}
    assert ok and refused  # (how many of each depends on how fast the 40 arrive; the exact count: test_serve_guards)
    assert all(r["chars"] == 500 for r in ok)
    assert all(r["retry_after"] == "1" and "--queue" in r["detail"] for r in refused), refused[0]
    assert max(r["seconds"] for r in refused) < 5  # answered, not left waiting
    still_serving(server, flickr)


# ---- the page in headless Chromium --------------------------------------------------------------------------

def _browser():
    from tools import serve_browser as browser

    missing = [str(p) for p in (browser.CHROMIUM, browser.CHROMEDRIVER) if not p.is_file()]
    if missing:
        message = (f"headless Chromium needs {' and '.join(missing)}: run `make browser` (apt-get install "
                   f"chromium chromium-driver)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser


def test_the_page_captions_an_upload_and_streams_text_in_headless_chromium(server, flickr, tmp_path_factory):
    browser = _browser()
    folder = tmp_path_factory.mktemp("serve-page")
    image = folder / flickr["test"][0]
    image.write_bytes(flickr["bytes"][flickr["test"][0]])
    notes = folder / "notes.txt"
    notes.write_text("not an image")
    answer = _caption(server, image.read_bytes()).json()
    expected = answer["captions"]
    driver = browser.headless_chromium()
    try:
        driver.get(server + "/")
        shown = browser.caption_in_page(driver, notes)  # a bad file: the page says why
        assert "not an image" in shown["error"], shown
        shown = browser.caption_in_page(driver, image)  # then a Flickr8k test image: both captions appear
        assert shown == {f"cap-{m}-{s}": expected[m][s] for m in ("supervised", "scst") for s in ("greedy", "beam")}
        assert all(shown.values())
        word = answer["word_attention"]["supervised"]["greedy"][1]  # a word's map, on click
        assert browser.word_map_in_page(driver, "cap-supervised-greedy", 1) == {
            "png": word["png"], "label": f'"{word["word"]}" (supervised, greedy)'}
        text = browser.generate_in_page(driver, "", 10)
        assert "prompt is empty" in text["error"]
        text = browser.generate_in_page(driver, "ROMEO:", 120, 0.8)
        assert text["prompt"] == "ROMEO:" and len(text["text"]) == 120 and "120 characters" in text["status"]
        assert all(u.startswith((server, "data:", "blob:")) for u in browser.resources(driver))
        path = browser.screenshot(driver, folder / "serve.png")
        print(f"\nscreenshot of the page: {path}")
        assert path.stat().st_size > 10_000
    finally:
        driver.quit()
