"""A load test of the demo's caption API: N requests from C concurrent clients over distinct images, each answer
compared with that image's answer when it was posted alone (so answers swapped or mixed between concurrent
requests are caught), with requests/s and latency percentiles; and a burst of simultaneous requests.

    python tests/tools/serve_loadtest.py --url http://127.0.0.1:8000 --images some/folder -n 400 -c 8
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def answer_key(answer: dict[str, Any]) -> str:
    """An answer without its timing, as one comparable string."""
    return json.dumps({k: v for k, v in answer.items() if k != "seconds"}, sort_keys=True)


def reference_answers(url: str, images: dict[str, bytes], timeout: float = 60.0) -> dict[str, str]:
    """Each image posted alone, one after another: {name: answer_key}."""
    out = {}
    with httpx.Client(base_url=url, timeout=timeout) as http:
        for name, data in images.items():
            response = http.post("/api/caption", files={"file": (name, data)})
            response.raise_for_status()
            out[name] = answer_key(response.json())
    return out


def caption_load(url: str, images: dict[str, bytes], expected: dict[str, str] | None = None, requests: int = 400,
                 concurrency: int = 8, timeout: float = 120.0) -> dict[str, Any]:
    """POST the images (request i: image i mod len(images)) to {url}/api/caption from `concurrency` clients, one
    connection each. `expected` ({name: answer_key}, e.g. from `reference_answers`): every answer must equal its
    image's; one that differs is a mismatch. Returns the counts, samples of errors and mismatches, the wall time,
    requests/s and latency percentiles (ms)."""
    names = list(images)
    latencies: list[float] = []
    errors: list[str] = []
    mismatches: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                name = names[i % len(names)]
                start = time.perf_counter()
                problem, wrong = None, None
                try:
                    response = http.post("/api/caption", files={"file": (name, images[name])})
                    if response.status_code != 200:
                        problem = f"{response.status_code}: {response.text[:200]}"
                    elif expected is not None and answer_key(response.json()) != expected[name]:
                        wrong = f"request {i}: the answer for {name} is not its answer alone"
                except (httpx.HTTPError, ValueError) as e:  # no answer, or not JSON
                    problem = f"{type(e).__name__}: {e}"
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        errors.append(problem)
                    if wrong:
                        mismatches.append(wrong)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "concurrency": concurrency, "distinct_images": len(names),
            "errors": len(errors), "error_samples": errors[:5],
            "mismatches": len(mismatches), "mismatch_samples": mismatches[:5],
            "seconds": round(seconds, 3), "requests_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1)}


def burst(url: str, n: int, body: dict[str, Any], timeout: float = 60.0) -> list[dict[str, Any]]:
    """`n` generation requests released at the same instant, each on its own connection: per request its status,
    Retry-After header, seconds to the answer's end and the characters streamed."""
    gate = threading.Barrier(n)

    def one(_: int) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            gate.wait()
            start = time.perf_counter()
            response = http.post("/api/generate", json=body)
            return {"status": response.status_code, "retry_after": response.headers.get("retry-after"),
                    "seconds": time.perf_counter() - start, "chars": len(response.text)
                    if response.status_code == 200 else 0, "detail": "" if response.status_code == 200
                    else response.json().get("detail", "")}

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--images", required=True, nargs="+", help="image files, or folders of them")
    p.add_argument("-n", "--requests", type=int, default=400)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    files = [f for a in map(Path, args.images) for f in (sorted(a.iterdir()) if a.is_dir() else [a]) if f.is_file()]
    images = {f.name: f.read_bytes() for f in files}
    result = caption_load(args.url, images, reference_answers(args.url, images), args.requests, args.concurrency)
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] or result["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
