#!/usr/bin/env bash
# The GPU rows of docs/benchmark.md in one run (estimated 5-8 minutes on one H100/H200;
# not yet run on a GPU: QUICK=1 below ran every step on the CPU):
#   OUT=/path/to/results bash tools/gpu_bench.sh
# Needs a CUDA build of torch/torchvision in $PY (default: python) and no internet: the
# RN101 tower runs with random weights (speed does not depend on their values) and the
# JPEGs come from the demo-world generator.
#   1. DualCoOp RN101 448 px, COCO's 80 classes, bf16: bound / step / reference / cache /
#      infer at batch 32 and 128 (+ the same at batch 128 with channels_last, and fp32);
#   2. data paths on 512 px JPEGs with the COCO training pipeline at 448 px: ours and
#      PIL+torchvision per core, the CPU loader with $WORKERS workers, the GPU path
#      (nvJPEG + batched augmentation), end to end both ways;
#   3. the demo config (128 px demo CLIP) at batch 32 and 128 with its data rows.
# Each step writes $OUT/<name>.json (and .log); a failed step does not stop the others.
# QUICK=1 runs the same steps tiny, on the CPU (a check of the script, not a benchmark).
set -u
PY=${PY:-python}
OUT=${OUT:?set OUT to the results folder}
WORKERS=${WORKERS:-16}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ "${QUICK:-0}" = 1 ]; then
  NTRAIN=48; SIZE=96; ITERS=1; DATA_ITERS=1; BS="4 8"; BS_BIG=8
  WORLD_BIG_SIZE=96; DEV="--device cpu --gpu-data"; WORKERS=0
  TOWER=(model.backbone.model_name=mlr-tiny-rn model.backbone.image_size=$SIZE)
else
  NTRAIN=1536; SIZE=448; ITERS=10; DATA_ITERS=6; BS="32 128"; BS_BIG=128
  WORLD_BIG_SIZE=512; DEV=""
  TOWER=()
fi
W512=$OUT/world_big W128=$OUT/world_demo
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat /proc/loadavg > "$OUT/loadavg_start.txt"
step() {  # name, then the command
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/steps.txt"
}
step world_big $PY -m mlr_plugin.datasets.demo_world --out "$W512" --num-train $NTRAIN \
  --num-val 4 --num-test 4 --image-size $WORLD_BIG_SIZE &
step world_demo $PY -m mlr_plugin.datasets.demo_world --out "$W128" --num-train $NTRAIN \
  --num-val 4 --num-test 4 &
COCO=(model.backbone.pretrained=None "${TOWER[@]}"
      train_dataloader.dataset.pipeline.0.target_size=$SIZE
      train_dataloader.dataset.pipeline.1.scale="($SIZE,$SIZE)"
      train_dataloader.dataset.pipeline.4.shape=$((SIZE / 2)))
# 1. model rows at COCO scale (no data needed: runs while the worlds are generated)
step rn101_bf16 $PY tools/benchmark.py configs/dualcoop/coco_p30.py $DEV --batch-size $BS \
  --iters $ITERS --warmup 3 --json "$OUT/rn101_bf16.json" --cfg-options "${COCO[@]}"
step rn101_bf16_channels_last $PY tools/benchmark.py configs/dualcoop/coco_p30.py $DEV \
  --batch-size $BS_BIG --iters $ITERS --warmup 3 --channels-last \
  --json "$OUT/rn101_bf16_channels_last.json" --cfg-options "${COCO[@]}"
step rn101_fp32 $PY tools/benchmark.py configs/dualcoop/coco_p30.py $DEV --batch-size $BS_BIG \
  --iters $ITERS --warmup 3 --no-amp --json "$OUT/rn101_fp32.json" --cfg-options "${COCO[@]}"
wait
# 2. data paths on the big JPEGs (20 demo classes: the prompts are built for them)
DATA=(train_dataloader.dataset.data_root="$W512"
      train_dataloader.dataset.ann_file=annotations/instances_train.json
      train_dataloader.dataset.data_prefix.img_path=train
      model.prompt_learner.num_classes=20)
step rn101_data $PY tools/benchmark.py configs/dualcoop/coco_p30.py $DEV --batch-size $BS_BIG \
  --iters 3 --warmup 2 --data --data-iters $DATA_ITERS --data-workers $WORKERS \
  --json "$OUT/rn101_data.json" --cfg-options "${COCO[@]}" "${DATA[@]}"
# 3. the demo config with its data rows
step demo $PY tools/benchmark.py configs/demo/dualcoop_p10.py $DEV --batch-size $BS \
  --iters $ITERS --warmup 3 --data --data-iters $DATA_ITERS --data-workers $WORKERS \
  --json "$OUT/demo.json" --cfg-options train_dataloader.dataset.data_root="$W128"
cat /proc/loadavg > "$OUT/loadavg_end.txt"
rm -rf "$W512" "$W128"  # the JPEGs are not results
cat "$OUT/steps.txt"
