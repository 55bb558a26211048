#!/usr/bin/env bash
# The benchmarks, one command: builds release binaries and runs the flash sale and the
# /health/live ceiling. Extra arguments go to myevents-bench (e.g. --seconds 5).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_build_tools
# Every backend: the benchmarks run on PostgreSQL, MongoDB and DynamoDB too.
cargo build --release --quiet -p myevents -p bench --features myevents/full
exec "$CARGO_TARGET_DIR/release/myevents-bench" --server "$CARGO_TARGET_DIR/release/myevents" \
  --data-dir "$CARGO_TARGET_DIR" "$@"
