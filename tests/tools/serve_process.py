"""`python main.py serve` as a child process on a free port of 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


class ServerFailed(RuntimeError):
    """The server exited or did not answer; the message holds its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(checkpoints: dict[str, Path], log: Path, options: list[str], wait_s: float = 90) -> Iterator[str]:
    """Start the demo with these checkpoints ({"mllm", "rl", "gpt"} -> .pt) and options; yield its base URL once
    /api/info answers; stop it afterwards."""
    port = free_port()
    cmd = [sys.executable, "main.py", "serve", "--port", str(port), *options]
    cmd += [arg for key in ("mllm", "rl", "gpt") for arg in (f"--{key}", str(checkpoints[key]))]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise ServerFailed(f"the server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"the server did not answer within {wait_s:g} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
