#!/usr/bin/env bash
# The captioner's options compared on dev only, at a cheap budget: 2,000 steps, dev CIDEr-D every 500, the test
# split unseen (eval.test=false), from the cpu ViT (runs/vit-cpu, the CIFAR-10 ViT itself, as every round before
# the alignment stage; a variant may start elsewhere). Each variant is runs/mllm-dev-<name>-s<seed>:
#   ref      the cpu preset as it is: 32x32 images, 4-pixel patches, 16 image tokens
#   px64     64x64 images, 4-pixel patches (the CIFAR ViT's positions interpolated): 256 patches, 64 image tokens
#   px64r4   as px64, 4x4 patches per image token: 16 image tokens
#   px64r4f  as px64r4 with the ViT frozen throughout (cached features only: every step is a cheap one)
#   px64r4fg as px64r4f with the grounding head over the 1,000 most frequent content words
#   px64r4fgb as px64r4fg with captions batched by length (train.length_pool=50: less padding)
#   px64r4fgbw as px64r4fgb, run at commit d46a7ff, whose length-pooled batches divided their loss by a fixed count
#            (since removed: it changed nothing on dev; the same options now reproduce px64r4fgb)
#   px64p8   64x64 images, 8-pixel patches (the patch kernel resized): 64 patches, 16 image tokens
#   ground   the cpu preset plus the grounding head over the 1,000 most frequent content words
#   conv     the cpu preset from runs/vit-conv: the cpu ViT recipe with the convolutional stem (model.stem=conv)
#   r2       the cpu preset with 2x2 patches per image token: 64 image tokens instead of 16 (context 96)
#   contrast the cpu preset from runs/vit-contrast: the captioner's ViT fine-tuned to match training images to their
#            captions (results/layer-probe/contrast.py)
#   align    the cpu preset from runs/align-cpu: the packaged alignment stage (python main.py train-align --preset cpu)
#   alignv3  the cpu preset from runs/align-lr0.3: the stage at 0.3x ViT learning rate (kept: results/align-dev/align-vlr0.3)
#   alignv10 the cpu preset from runs/align-lr1.0: the stage at 1.0x ViT learning rate (kept: results/align-dev/align-vlr1.0)
# VARIANTS="ref px64" and SEEDS="0 1 2" choose (defaults: every variant, seed 0); extra key=value arguments go to
# every run (a finished run is kept as it is: give new settings a new variant). A stopped run is resumed. Then
# runs/mllm-dev.md: the runs of this call, their best dev evaluation, mean +- std over the seeds.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
VARIANTS="${VARIANTS:-ref px64 px64r4 px64r4f px64r4fg px64r4fgb px64p8 ground}"
SEEDS="${SEEDS:-0}"
declare -A OPTIONS=(
  [ref]=""
  [px64]="model.image_size=64 model.text.context=96"
  [px64r4]="model.image_size=64 model.reduce_factor=4"
  [px64r4f]="model.image_size=64 model.reduce_factor=4 train.frozen_vision_until=1.0"
  [px64r4fg]="model.image_size=64 model.reduce_factor=4 train.frozen_vision_until=1.0 model.grounding_words=1000"
  [px64r4fgb]="model.image_size=64 model.reduce_factor=4 train.frozen_vision_until=1.0 model.grounding_words=1000 train.length_pool=50"
  [px64r4fgbw]="model.image_size=64 model.reduce_factor=4 train.frozen_vision_until=1.0 model.grounding_words=1000 train.length_pool=50"
  [px64p8]="model.image_size=64 model.vision.patch_size=8"
  [ground]="model.grounding_words=1000"
  [conv]="init.vision=runs/vit-conv model.vision.stem=conv"
  [r2]="model.reduce_factor=2 model.text.context=96"
  [contrast]="init.vision=runs/vit-contrast"
  [align]="init.vision=runs/align-cpu"
  [alignv3]="init.vision=runs/align-lr0.3"
  [alignv10]="init.vision=runs/align-lr1.0"
)
runs=()
for name in $VARIANTS; do
  [ -n "${OPTIONS[$name]+set}" ] || { echo "unknown variant $name; choose from ${!OPTIONS[*]}" >&2; exit 2; }
  for seed in $SEEDS; do
    run="runs/mllm-dev-$name-s$seed"
    runs+=("$run")
    # shellcheck disable=SC2086  # the options are words
    train_once train-mllm "$run" train.seed="$seed" train.max_steps=2000 train.eval_interval=500 eval.test=false \
      init.vision=runs/vit-cpu ${OPTIONS[$name]} "$@"
  done
done
$PY scripts/seed_table.py --dev "${runs[@]}" --out runs/mllm-dev.md
