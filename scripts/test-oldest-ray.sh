#!/usr/bin/env bash
# Run a focused subset of radas's tests on the OLDEST Ray minor radas supports
# (radas/ray_compat/versions.py: OLDEST), in its own venv, .venv-ray-oldest: the patches of Ray
# internals, a local sweep with its history, restore, one cluster round trip, and the
# client/cluster version check. Creates and fills the venv itself, so it works on a fresh
# machine. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv=.venv-ray-oldest
if [ ! -x "$venv/bin/python" ]; then
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "radas needs Python >= 3.10; set PYTHON=/path/to/python3.10+" >&2
    exit 1
  }
  echo "[radas] creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
# the one place that names the oldest supported minor
oldest=$("$venv/bin/python" -c \
  'import runpy; print("%d.%d" % runpy.run_path("src/radas/ray_compat/versions.py")["OLDEST"])')
# radas with what the subset needs (the test extra), not the whole dev extra: its s3 and
# tracker packages are not used here and resolving them takes pip many minutes on a fresh venv
echo "[radas] installing radas[test] with ray $oldest.* into $venv (the first time takes minutes)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "ray[default,tune]==$oldest.*" -e ".[test]"
installed=$("$venv/bin/python" -c 'import ray; print(ray.__version__)')
case "$installed" in
  "$oldest".*) echo "[radas] testing on Ray $installed" ;;
  *) echo "[radas] expected Ray $oldest.* in $venv, found $installed" >&2; exit 1 ;;
esac
exec "$venv/bin/python" -m pytest \
  tests/ray/test_ray_versions.py \
  tests/ray/test_ray_compat.py \
  tests/unit/test_shape.py \
  tests/ray/test_history_fidelity.py \
  tests/ray/test_restore.py \
  "tests/ray/test_clusters.py::test_grid_runs_on_the_cluster_and_is_reanalyzed" \
  "$@"
