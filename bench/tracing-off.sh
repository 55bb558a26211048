#!/usr/bin/env bash
# What the tracing code costs the flash sale when no OTLP endpoint is set (issue 16: "with no
# endpoint set, nothing is exported and the flash sale is as fast as before"): this commit's
# release binary as shipped, against the same commit built with every span and log line
# compiled out (tracing's `max_level_off` feature) — the flash sale with no tracing code at all.
# They run alternately, ROUNDS times, once with RUST_LOG at its default (`info`: MyEvents' spans
# are made, so that log lines name their request and trace) and once at `warn` (the bench's
# default). Each run prints its rate and the server's own CPU per booking by thread, which
# is steadier than the rate on a shared machine: compare the two binaries within a round.
#   bench/tracing-off.sh [ROUNDS] [SECONDS]      (default 4 rounds of 8 s each)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-4}" seconds="${2:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_build_tools
bins="$CARGO_TARGET_DIR/tracing-off"
mkdir -p "$bins"
# The shipped build first, kept aside: the second build writes the same path.
cargo build --release --quiet -p myevents -p bench --features myevents/full
cp "$CARGO_TARGET_DIR/release/myevents" "$bins/myevents-shipped"
cp "$CARGO_TARGET_DIR/release/myevents-bench" "$bins/myevents-bench"
cargo build --release --quiet -p myevents --features myevents/full,tracing/max_level_off
cp "$CARGO_TARGET_DIR/release/myevents" "$bins/myevents-no-tracing"

sale() { # BINARY RUST_LOG
  env -u OTEL_EXPORTER_OTLP_ENDPOINT RUST_LOG="$2" "$bins/myevents-bench" --server "$1" \
    --data-dir "$CARGO_TARGET_DIR" --seconds "$seconds" flash-sale \
    | grep -E '^(flash-sale|server CPU per booking)'
}
for round in $(seq "$rounds"); do
  for level in info warn; do
    echo "round $round, RUST_LOG=$level"
    echo "shipped:"
    sale "$bins/myevents-shipped" "$level"
    echo "no tracing code:"
    sale "$bins/myevents-no-tracing" "$level"
  done
done
