#!/usr/bin/env bash
# What the project's check scripts share (sourced by scripts/lean-check.sh and deploy/test/*):
# one line per check, `ok …` or `FAILED …`, counted; `summary NAME` closes the output with the
# line scripts/test adds up, "NAME: N passed, M failed", and succeeds only when something passed
# and nothing failed; `free_port` asks the kernel for a port that is free on 127.0.0.1.

passed=0
failed=0

ok() { echo "ok     $1"; passed=$((passed + 1)); }
bad() { echo "FAILED $1"; failed=$((failed + 1)); }

# check WHAT COMMAND…: WHAT is ok when the command succeeds.
check() {
  local what="$1"
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

# run WHAT COMMAND…: the same, with the command's output shown only when it fails.
run() {
  local what="$1" log rc=0
  shift
  log="$(mktemp)"
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    ok "$what"
  else
    bad "$what"
    sed 's/^/       /' "$log" | tail -n 60
  fi
  rm -f "$log"
}

summary() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
