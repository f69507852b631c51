"""`python main.py serve`: the local web demo on 127.0.0.1 (see docs/serve.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .limits import Limits


def add_serve_args(p: argparse.ArgumentParser) -> None:
    """The `serve` command's options (mllm/cli.py calls this)."""
    p.add_argument("--runs", default="runs", help="folder of the run folders (default runs/)")
    p.add_argument("--mllm", default=None, help="supervised captioner: run folder or .pt (default RUNS/mllm-cpu)")
    p.add_argument("--rl", default=None, help="SCST captioner: run folder or .pt (default RUNS/rl-cpu)")
    p.add_argument("--gpt", default=None, help="char GPT: run folder or .pt (default RUNS/gpt-cpu)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_bytes / 1e6,
                   help=f"largest image upload in MB (default {Limits.max_upload_bytes / 1e6:g})")
    p.add_argument("--max-prompt-chars", type=int, default=Limits.max_prompt_chars,
                   help=f"longest prompt (default {Limits.max_prompt_chars})")
    p.add_argument("--max-length", type=int, default=Limits.max_length,
                   help=f"most new characters per generation (default {Limits.max_length})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0,
                   help="model calls that run at once (default: one per core, at most 4)")
    p.add_argument("--queue", type=int, default=Limits.queue,
                   help=f"requests that may wait for a worker; more at once are answered 503 with Retry-After "
                        f"(default {Limits.queue})")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per model call (default: the cores divided among the workers)")


def serve(args: argparse.Namespace) -> int:
    """Load the three models (a missing one is an error naming the command that trains it), then serve."""
    import uvicorn

    from .app import create_app
    from .models import DemoModels
    from .work import set_torch_threads

    runs = Path(args.runs)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1e6), max_prompt_chars=args.max_prompt_chars,
                    max_length=args.max_length, workers=args.workers, queue=args.queue, threads=args.threads)
    set_torch_threads(limits.threads)  # once, before any worker runs: workers x threads = the cores
    models = DemoModels(args.mllm or runs / "mllm-cpu", args.rl or runs / "rl-cpu", args.gpt or runs / "gpt-cpu",
                        args.device, limits)
    print(f"serving the demo at http://{args.host}:{args.port}/ (API: /api/caption, /api/generate; "
          f"description: /openapi.json); {limits.workers} workers x {limits.threads} torch threads, queue "
          f"{limits.queue}; Ctrl-C stops it", flush=True)
    uvicorn.run(create_app(models), host=args.host, port=args.port, log_level="warning")
    return 0
