"""A small load test of the demo's caption API: N requests from C concurrent clients, requests/s and latency.

    python -m mllm.serve.loadtest --url http://127.0.0.1:8000 --image some.jpg -n 200 -c 8
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


def caption_load(url: str, image: bytes, requests: int = 200, concurrency: int = 8, filename: str = "image.jpg",
                 timeout: float = 120.0) -> dict[str, Any]:
    """POST `image` to {url}/api/caption `requests` times from `concurrency` clients (one connection each).

    Returns the counts, the first few errors, how many different answers came back (1: the same image got the same
    captions and attention every time), the wall time, requests/s and the latency percentiles (ms)."""
    latencies: list[float] = []
    errors: list[str] = []
    answers: set[str] = set()  # the same image must get the same answer, however many requests run at once
    lock = threading.Lock()
    left = [requests]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                start = time.perf_counter()
                try:
                    response = http.post("/api/caption", files={"file": (filename, image)})
                    problem = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
                    answer = "" if problem else json.dumps({k: v for k, v in response.json().items() if k != "seconds"})
                except (httpx.HTTPError, ValueError) as e:  # no answer, or not JSON
                    problem, answer = f"{type(e).__name__}: {e}", ""
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        errors.append(problem)
                    else:
                        answers.add(answer)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "concurrency": concurrency, "errors": len(errors), "error_samples": errors[:5],
            "distinct_answers": len(answers),
            "seconds": round(seconds, 3), "requests_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "max_ms": round(float(ms.max()), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--image", required=True, help="an image file to caption")
    p.add_argument("-n", "--requests", type=int, default=200)
    p.add_argument("-c", "--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    path = Path(args.image)
    result = caption_load(args.url, path.read_bytes(), args.requests, args.concurrency, path.name)
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
