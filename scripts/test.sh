#!/usr/bin/env bash
# Run radas's test suite. Creates .venv (Python >= 3.10) and installs radas with its dev extras
# first, so it works on a fresh machine. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ".[dev]"
exec .venv/bin/python -m pytest "$@"
