#!/usr/bin/env bash
# torchrun for the tools: bash tools/torchrun.sh NUM_PROCS TOOL.py [TOOL args...]
# (used by dist_train.sh and dist_test.sh). On a CPU-only machine the processes talk
# over gloo (set up by the tools themselves).
NPROCS=$1
TOOL=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" --master_port="$PORT" \
    "$(dirname "$0")/$TOOL" "${@:3}" --launcher pytorch
