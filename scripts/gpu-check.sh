#!/usr/bin/env bash
# radas on one real GPU, in under 5 minutes: verify_gpu in 4 trials sharing the GPU (0.25
# each), a CUDA out-of-memory retried by radas with 0.5 GPU, and the throughput of 4 packed
# trials against 1 trial at a time on the whole GPU. Prints lines of numbers and a
# `GPU CHECK: ...` summary; exits 0 when every part passed.
#
#   VENV=/path/to/venv scripts/gpu-check.sh    # default .venv (relative paths: to the repo's
#                                              # root): radas (editable) and a CUDA torch
#
# Needs one NVIDIA GPU and a CUDA build of torch: without them it exits 2 at once ("needs a
# GPU"). It installs and downloads nothing, and writes only to a temporary RADAS_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${VENV:-.venv}/bin/python"
if [ ! -x "$python" ]; then
  echo "GPU CHECK: FAIL: no Python at $python: set VENV to a venv with radas and a CUDA torch" >&2
  exit 2
fi
# The dry run (the sweeps on the CPU) is for developers calling bench/gpu_check.py directly:
# this script never passes without a GPU.
unset RADAS_GPU_CHECK_DRY
status=0
timeout --kill-after=15 290 "$python" -u bench/gpu_check.py || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "GPU CHECK: FAIL: it did not finish within 290 s and was stopped" >&2
fi
exit "$status"
