# Shared by test.sh (--under-load): CPU hogs, busy loops of the sourcing script's own, one per
# core (RADAS_TEST_HOGS=N for another count). They end when the script ends: on exit, on
# Ctrl-C or TERM (the traps below), and by themselves when it is killed outright (each loop
# checks that the script still runs).
hogs=()
start_hogs() {
  local count="${RADAS_TEST_HOGS:-$(nproc)}"
  for _ in $(seq "$count"); do
    (while kill -0 "$$" 2>/dev/null; do :; done) &
    hogs+=("$!")
  done
  echo "[radas] under load: $count CPU hogs running (pids ${hogs[*]}), ended with this script"
}
stop_hogs() {
  if [ "${#hogs[@]}" -gt 0 ]; then
    # KILL: a TERM sent while a hog is still being forked can be lost in bash (its trap is
    # reset there), and `wait` would then wait for good
    kill -KILL "${hogs[@]}" 2>/dev/null || true
    wait "${hogs[@]}" 2>/dev/null || true
    hogs=()
  fi
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
