"""The web demo's load benchmark on the tests' tiny checkpoints: trains them (seconds), starts the server, posts
distinct Flickr8k test images from concurrent clients (each answer checked against that image's answer alone),
then a burst past the queue; writes the numbers and the machine to a JSON file.

    MLLM_DATA_MIRROR=../shared/data python tests/tools/serve_bench.py --out bench/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: serve_checkpoints and tools

from serve_checkpoints import read_flickr, write_checkpoints  # noqa: E402

from tools.serve_loadtest import burst, caption_load, reference_answers  # noqa: E402
from tools.serve_process import running_server  # noqa: E402


def machine() -> dict[str, str | int]:
    """The CPU model, its cores and the load when the run started."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mirror", default=os.environ.get("MLLM_DATA_MIRROR", "../shared/data"))
    p.add_argument("--images", type=int, default=50, help="distinct Flickr8k test images")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--burst", type=int, default=40)
    p.add_argument("--out", default="bench/serve_load.json")
    args = p.parse_args(argv)
    started = machine()
    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    flickr = read_flickr(Path(args.mirror), n_test=args.images)
    checkpoints = write_checkpoints(folder, Path(args.mirror), flickr)
    images = {name: flickr["bytes"][name] for name in flickr["test"]}
    options = ["--workers", str(args.workers), "--queue", str(args.queue), "--threads", "1"]
    with running_server(checkpoints, folder / "serve.log", options) as url:
        expected = reference_answers(url, images)
        load = caption_load(url, images, expected, args.clients * args.per_client, args.clients)
        bursts = burst(url, args.burst, {"prompt": "ROMEO:", "length": 500, "temperature": 0.8})
        after = caption_load(url, dict(list(images.items())[:8]), {k: expected[k] for k in list(images)[:8]}, 16, 2)
    refused = [b for b in bursts if b["status"] == 503]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": started,
              "server": {"checkpoints": "tests/serve_checkpoints.py (tiny)", "workers": args.workers,
                         "queue": args.queue, "torch_threads": 1},
              "load": load,
              "burst": {"requests": args.burst, "answered_200": sum(b["status"] == 200 for b in bursts),
                        "refused_503": len(refused), "other": sum(b["status"] not in (200, 503) for b in bursts),
                        "slowest_503_ms": round(1000 * max((b["seconds"] for b in refused), default=0), 1),
                        "retry_after": sorted({b["retry_after"] for b in refused if b["retry_after"]})},
              "after_burst": {k: after[k] for k in ("requests", "errors", "mismatches", "p50_ms")}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if load["errors"] or load["mismatches"] or after["errors"] or result["burst"]["other"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
