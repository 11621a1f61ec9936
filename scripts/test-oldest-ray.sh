#!/usr/bin/env bash
# Run a focused subset of radas's tests on the OLDEST Ray minor radas supports
# (radas/ray_compat/versions.py: OLDEST), in its own venv, .venv-ray-oldest: the patches of Ray
# internals, a local sweep with its history, restore, one cluster round trip, and the
# client/cluster version check. Creates and fills the venv itself (scripts/_venv.sh), so it
# works on a fresh machine. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
venv=.venv-ray-oldest
make_venv "$venv"
# the one place that names the oldest supported minor
oldest=$("$venv/bin/python" -c \
  'import runpy; print("%d.%d" % runpy.run_path("src/radas/ray_compat/versions.py")["OLDEST"])')
# radas with what the subset needs (the test extra), not the whole dev extra, at the versions
# of locks/ray-oldest.txt (scripts/lock); naming Ray's minor here too makes a lock that no
# longer matches versions.py fail the install instead of testing another Ray
echo "[radas] installing radas[test] with ray $oldest.* into $venv at the versions of" \
  "locks/ray-oldest.txt"
install_locked "$venv" locks/ray-oldest.txt "ray[default,tune]==$oldest.*" -e ".[test]"
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
