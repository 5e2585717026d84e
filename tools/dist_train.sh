#!/usr/bin/env bash
# Multi-GPU / multi-process training with torchrun:
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# NNODES, NODE_RANK, PORT and MASTER_ADDR are read from the environment.
exec bash "$(dirname "$0")/torchrun.sh" "$2" train.py "$1" "${@:3}"
