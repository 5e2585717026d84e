#!/usr/bin/env bash
# Multi-GPU / multi-process evaluation with torchrun:
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
# NNODES, NODE_RANK, PORT and MASTER_ADDR are read from the environment.
exec bash "$(dirname "$0")/torchrun.sh" "$3" test.py "$1" "$2" "${@:4}"
