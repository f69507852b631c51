"""A reliability check, not a speed benchmark: do 2-process torchrun runs exit cleanly on busy cores?

A finished torchrun worker used to die at exit now and then (SIGABRT, "terminate called without an active
exception"): a gloo thread still releasing a collective's tensors while Python tore itself down. Since then
`main.py` ends with `runtime.exit_process`, which skips that teardown under torchrun. This script launches
tests/ddp_worker.py (a tiny run through `launch.train`) N times each way, alternating, with a CPU-bound
process beside it (the failures only showed on loaded cores), and counts the runs that exit non-zero:

    python bench/torchrun_exit.py --runs 30     # writes bench/torchrun_exit.md
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BURNER = "import torch\na = torch.randn(1000, 1000)\nwhile True:\n    a @ a\n"
WAYS = {  # how the worker process ends after launch.train returned
    "exit_process (now)": "import ddp_worker, sys; from mllm.training.runtime import exit_process\n"
                          "sys.argv = ['ddp_worker.py', *sys.argv[1:]]; ddp_worker.main(); exit_process(0)\n",
    "interpreter teardown (before)": "import ddp_worker, sys\n"
                                     "sys.argv = ['ddp_worker.py', *sys.argv[1:]]; ddp_worker.main()\n",
}


def launch(script: Path, out: Path, timeout: float = 300) -> tuple[int | str, str]:
    """One 2-process torchrun of `script`: (exit code or 'timeout', the line that tells why if it failed)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out),
           "2"]
    path = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: a hung run is killed whole
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", f"no exit after {timeout:.0f} s"
    lines = output.strip().splitlines()
    why = next((line for line in lines if "terminate called" in line), lines[-1] if lines else "")
    return proc.returncode, (why if proc.returncode else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="launches per way (default 30)")
    p.add_argument("--out", default=str(REPO / "bench" / "torchrun_exit.md"))
    args = p.parse_args()
    failed = {way: [] for way in WAYS}
    start = time.time()
    burner = subprocess.Popen([sys.executable, "-c", BURNER])
    time.sleep(5)  # let it import torch and start multiplying before the first launch
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scripts = {}
            for i, (way, code) in enumerate(WAYS.items()):
                scripts[way] = Path(tmp) / f"worker{i}.py"
                scripts[way].write_text(code)
            for r in range(args.runs):
                order = list(WAYS) if r % 2 == 0 else list(reversed(WAYS))  # alternate which way goes first
                for way in order:
                    rc, why = launch(scripts[way], Path(tmp) / f"run{r}-{list(WAYS).index(way)}")
                    if rc != 0:
                        failed[way].append(f"run {r + 1}: exit {rc}: {why}")
                    print(f"round {r + 1}/{args.runs} {way}: exit {rc}", flush=True)
    finally:
        burner.kill()
        burner.wait()
    lines = [f"# torchrun exit check\n\n`python bench/torchrun_exit.py --runs {args.runs}` on "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}, {os.cpu_count()} cores, a CPU-bound "
             f"process running beside it; {time.time() - start:.0f} s in all. Each launch: tests/ddp_worker.py under "
             f"`torch.distributed.run --nproc_per_node=2` (5 steps through `launch.train`, gloo).\n",
             "| how the worker ends | launches | failed |", "|---|---|---|"]
    lines += [f"| {way} | {args.runs} | {len(f)} |" for way, f in failed.items()]
    before = len(failed["interpreter teardown (before)"]) / args.runs
    if before == 0:
        lines.append("\nThe old ending did not fail in this sample: too few launches to tell the two apart.")
    else:
        lines.append(f"\nA count is a sample: were launches failing at the rate the old ending showed here "
                     f"({before:.0%}), {args.runs} clean launches in a row would still happen by chance "
                     f"{(1 - before) ** args.runs:.1%} of the time.")
    for way, f in failed.items():
        if f:
            lines += [f"\n{way}:", *(f"- {x}" for x in f)]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
