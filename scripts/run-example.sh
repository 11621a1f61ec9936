#!/usr/bin/env bash
# Run the two-moons example locally: how does the learning rate affect the learning speed of a
# small neural network? Creates .venv and installs radas with the example's extras first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ".[examples]"
cd examples/two_moons
exec ../../.venv/bin/python -u run.py
