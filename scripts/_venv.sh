# Shared by the set-up scripts: create a venv if needed and install radas (editable) into it
# with the exact versions of a lock file in locks/ (made by scripts/lock), using uv: a fresh
# machine gets the versions the suite was verified on, in seconds instead of minutes of pip
# resolving. The locks are universal (any Python >= 3.10, any platform) and verified on CPython
# 3.11, Linux x86_64. uv comes from the package index into the venv itself (`pip install uv`),
# so python3 with pip is all a machine needs.

# The uv that installs into the venvs and that scripts/lock writes the locks with.
UV_VERSION=0.13.10

# make_venv VENV: create VENV with $PYTHON (default python3) unless it exists.
make_venv() {
  local venv="$1"
  local python="${PYTHON:-python3}"
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
      echo "radas needs Python >= 3.10; set PYTHON=/path/to/python3.10+" >&2
      exit 1
    }
    echo "[radas] creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
  fi
}

# ensure_uv VENV: uv $UV_VERSION in VENV (VENV/bin/uv).
ensure_uv() {
  local venv="$1"
  if [ "$("$venv/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

# install_locked VENV LOCK REQUIREMENT...: install the requirements (e.g. -e ".[dev]") into
# VENV, every package at the version LOCK names (the lock is a constraints file: what it does
# not name resolves as usual, so a dependency added since the last scripts/lock still installs).
install_locked() {
  local venv="$1" lock="$2"
  shift 2
  if [ ! -f "$lock" ]; then
    echo "[radas] no lock file $lock: scripts/lock makes locks/dev.txt, examples.txt and" \
      "ray-oldest.txt" >&2
    exit 1
  fi
  make_venv "$venv"
  ensure_uv "$venv"
  # the distribution was called radas before radas-ray: remove an editable install of that
  # name left in an older venv, so one distribution provides the radas package
  if "$venv/bin/uv" pip show --python "$venv/bin/python" radas >/dev/null 2>&1; then
    "$venv/bin/uv" pip uninstall --quiet --python "$venv/bin/python" radas
  fi
  "$venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" \
    --constraint "$lock" "$@"
}

# ensure_venv EXTRAS: .venv with radas (editable) and EXTRAS (".[dev]" or ".[examples]"), at
# the versions of locks/<extra>.txt.
ensure_venv() {
  local extras="$1"
  local extra="${extras#.[}"
  extra="${extra%]}"
  make_venv .venv
  echo "[radas] installing radas${extras#.} into .venv at the versions of locks/$extra.txt"
  install_locked .venv "locks/$extra.txt" -e "$extras"
}
