# Shared by the test scripts: the headless browser the report page's tests load it in
# (tests/ray/test_report_page.py). Debian's chromium and chromium-driver, driven by Playwright's
# Python package through executable_path: Playwright's own browser download (`playwright
# install`) cannot reach its host from CI, so it is never used.

# ensure_chromium: install Debian's chromium and chromium-driver unless `chromium` is on PATH.
# Installing needs root (CI runs as root); otherwise it says what to run and returns 1, and
# the browser tests skip, naming this script.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "[radas] chromium is missing and this is not root, so it is not installed: run" \
      "'sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" \
      "chromium-driver' (the report page's browser tests skip without it)" >&2
    return 1
  fi
  echo "[radas] installing Debian's chromium and chromium-driver (the report page's browser tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
  command -v chromium >/dev/null 2>&1
}
