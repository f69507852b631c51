#!/usr/bin/env bash
# The gpu presets on one GPU, each for a short budget (STEPS, default 60), chained as the demo chains them, then
# `torchrun` with 1 process on the same GPU; prints each run's step time and peak GPU memory. Needs the data
# (MLLM_DATA_MIRROR=folder with the archives, or network). Output in OUT (default runs-gpu-check/, replaced).
# With 2 or more GPUs visible it also runs 2 processes (DDP over NCCL). Extra arguments go to every train command.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
STEPS="${STEPS:-60}"; OUT="${OUT:-runs-gpu-check}"
rm -rf "$OUT"; mkdir -p "$OUT"
short=(--device cuda "train.max_steps=$STEPS" "train.eval_interval=$STEPS" "train.checkpoint_interval=$STEPS"
       "train.log_interval=10" "train.warmup_steps=10")
small_eval=("eval.val_images=200")  # a short check: 200 dev images per evaluation (the test report stays whole)
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), \
torch.__version__, 'CUDA', torch.version.cuda, 'NCCL', torch.cuda.nccl.version())"
time $PY main.py data
time $PY main.py train-vit --preset gpu --run-dir "$OUT/vit-gpu" "${short[@]}" train.epochs=0 "$@"
time $PY main.py train-llm --preset gpu --run-dir "$OUT/gpt-gpu" "${short[@]}" "$@"
time $PY main.py train-align --preset gpu --run-dir "$OUT/align-gpu" "${short[@]}" "${small_eval[@]}" \
  "init.vision=$OUT/vit-gpu" "$@"
time $PY main.py train-mllm --preset gpu --run-dir "$OUT/mllm-gpu" "${short[@]}" "${small_eval[@]}" \
  "init.vision=$OUT/align-gpu" "$@"
time $PY main.py train-rl --preset gpu --run-dir "$OUT/rl-gpu" "${short[@]}" "${small_eval[@]}" \
  "init.captioner=$OUT/mllm-gpu" "$@"
# torchrun: 1 process (world size 1 trains without DDP), and the NCCL backend itself: a DDP step on this GPU
time torchrun --standalone --nproc_per_node 1 main.py train-llm --preset gpu --run-dir "$OUT/gpt-gpu-torchrun" \
  "${short[@]}" "$@"
check="$OUT/nccl_check.py"
cat > "$check" <<'PY'
import torch, torch.distributed as dist
dist.init_process_group("nccl"); torch.cuda.set_device(0)
net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 8).cuda(), device_ids=[0])
net(torch.randn(4, 8, device="cuda")).sum().backward()
x = torch.ones(1, device="cuda"); dist.all_reduce(x)
print(f"NCCL: backend {dist.get_backend()}, world {dist.get_world_size()}, all_reduce {x.item()}, DDP backward ok")
dist.destroy_process_group()
PY
torchrun --standalone --nproc_per_node 1 "$check"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  time torchrun --standalone --nproc_per_node 2 main.py train-llm --preset gpu --run-dir "$OUT/gpt-gpu-ddp2" \
    "${short[@]}" "$@"
fi
$PY - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
print(f"\n| run | steps | s/step (median; first 10 steps) | peak GPU memory | wall time |\n|---|---|---|---|---|")
for run in sorted(p for p in Path(sys.argv[1]).iterdir() if (p / "summary.json").is_file()):
    s = json.loads((run / "summary.json").read_text())
    logs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    t = [(r["step"], r["time"]) for r in logs if "train_loss" in r]
    per = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(t, t[1:])]
    first = f"{t[0][1] / t[0][0]:.3f}" if t else "-"
    median = f"{statistics.median(per):.3f}" if per else "-"
    print(f"| {run.name} | {s['steps']} | {median}; {first} | {s.get('peak_memory_gib', '-')} GiB "
          f"| {s['wall_time_s']} s |")
PY
