#!/usr/bin/env bash
# Run radas's test suite. Creates .venv (Python >= 3.10) and installs radas with its dev extras
# first, so it works on a fresh machine.
#
# Without arguments: the whole suite on the newest supported Ray (.venv), then a focused subset
# on the oldest (scripts/test-oldest-ray.sh, in .venv-ray-oldest); fails if either fails.
# With arguments: only pytest in .venv, with them (e.g. -m "not slow", or a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
ensure_venv ".[dev]"
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
status=0
.venv/bin/python -m pytest || status=$?
echo "[radas] the focused subset on the oldest supported Ray (scripts/test-oldest-ray.sh)"
./scripts/test-oldest-ray.sh || status=$?
exit "$status"
