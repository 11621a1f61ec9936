# Shared by the set-up scripts: create .venv if needed and install radas (editable) into it.
ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
      echo "radas needs Python >= 3.10; set PYTHON=/path/to/python3.10+" >&2
      exit 1
    }
    echo "[radas] creating .venv with $("$python" --version)"
    "$python" -m venv .venv
  fi
  echo "[radas] installing radas${extras#.} into .venv (the first time takes a few minutes)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "${extras}"
}
