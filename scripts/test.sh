#!/usr/bin/env bash
# Run radas's test suite. Creates .venv (Python >= 3.10) and installs radas with its dev extras
# first, and Debian's chromium for the report page's browser tests (as root; scripts/_browser.sh),
# so it works on a fresh machine.
#
# Without arguments: the static checks (scripts/check: ruff format, ruff check, mypy, the docs
# build), the release check (scripts/check-release: wheel and sdist built, installed in a fresh
# venv and run), the whole suite on the newest supported Ray (.venv) in two processes
# (pytest-xdist; RADAS_TEST_WORKERS=N for N, 1 for one process), then a focused subset on the oldest
# (scripts/test-oldest-ray.sh, in .venv-ray-oldest), then the fast tests whose behaviour
# depends on timing (-m "timing and not slow") once more under CPU load; fails if any of them
# fails.
# With arguments: only pytest in .venv, with them (e.g. -m "not slow", tests/unit, a file).
# --under-load first (with or without further arguments): the same (without the repeated
# timing tests: everything already runs under load), with one CPU hog per core
# (RADAS_TEST_HOGS=N for another count) running the whole time (scripts/_load.sh), so a run
# shows what a busy machine does to radas.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_load.sh  # start_hogs / stop_hogs, ended with this script
source scripts/_browser.sh  # ensure_chromium: the report page's browser tests

under_load=0
if [ "${1:-}" = "--under-load" ]; then
  under_load=1
  shift
fi
ensure_venv ".[dev]"
browser=0
ensure_chromium || browser=$?  # missing: the browser tests skip, so a full run fails
if [ "$under_load" = 1 ]; then
  start_hogs
fi
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m pytest "$@"
  exit
fi
status=$browser
echo "[radas] the static checks (scripts/check)"
./scripts/check || status=$?
echo "[radas] the wheel and sdist as released, installed and run (scripts/check-release)"
./scripts/check-release || status=$?
# two processes by default (pytest-xdist; each machine-wide bed stays in one of them: see
# CONTRIBUTING.md); RADAS_TEST_WORKERS=1 runs it in one
workers="${RADAS_TEST_WORKERS:-2}"
echo "[radas] the whole suite on the newest supported Ray, in $workers process(es)"
if [ "$workers" -gt 1 ]; then
  .venv/bin/python -m pytest -n "$workers" --dist loadgroup || status=$?
else
  .venv/bin/python -m pytest || status=$?
fi
echo "[radas] the focused subset on the oldest supported Ray (scripts/test-oldest-ray.sh)"
./scripts/test-oldest-ray.sh || status=$?
if [ "$under_load" = 0 ]; then  # (under load already: the whole suite ran under it)
  echo "[radas] the fast tests that depend on timing (-m 'timing and not slow') again, under load"
  start_hogs
  .venv/bin/python -m pytest -m "timing and not slow" || status=$?
  stop_hogs
fi
exit "$status"
