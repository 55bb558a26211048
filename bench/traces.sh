#!/usr/bin/env bash
# What tracing costs the flash sale: the same release binary, alternately without an OTLP
# endpoint (no trace layer at all) and exporting every span (the default sampler keeps 100 %)
# over gRPC to a local receiver that decodes and discards them (deploy/test/otlp/receiver.py with
# "-" as its file). Each run prints its "µs CPU per answer": compare the two kinds within this
# run (the machine, and the receiver's own CPU, are shared by both).
#   bench/traces.sh [ROUNDS] [SECONDS]      (default 2 rounds of 10 s each)
# OLD_SERVER=PATH adds, first in each round, a run of that binary (an older release build) with
# the bench's default RUST_LOG, and one of this build likewise: old against new, no endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}" seconds="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# shellcheck source=scripts/services.sh
source scripts/services.sh
# shellcheck source=scripts/checks.sh
source scripts/checks.sh
ensure_build_tools
ensure_otlp_receiver
cargo build --release --quiet -p myevents -p bench --features myevents/full
grpc="$(free_port)" http="$(free_port)"
python3 deploy/test/otlp/receiver.py "$grpc" "$http" - &
receiver=$!
trap 'kill "$receiver" 2>/dev/null || true' EXIT
# Old against new: each server as the bench starts it by default (RUST_LOG=warn).
plain() {
  local bin="$1"
  env -u RUST_LOG -u OTEL_EXPORTER_OTLP_ENDPOINT "$CARGO_TARGET_DIR/release/myevents-bench" \
    --server "$bin" --data-dir "$CARGO_TARGET_DIR" --seconds "$seconds" flash-sale | grep '^flash-sale'
}
# Both kinds log the same (warnings only) and keep MyEvents' own spans at info, which the
# exporter needs (RUST_LOG filters spans too): the difference is the export alone.
export RUST_LOG="warn,platform=info,bus=info,users=info,events=info,bookings=info,notifications=info,myevents=info"
# One flash sale; the arguments are env(1)'s, for the server and the load generator.
sale() {
  env "$@" "$CARGO_TARGET_DIR/release/myevents-bench" --server "$CARGO_TARGET_DIR/release/myevents" \
    --data-dir "$CARGO_TARGET_DIR" --seconds "$seconds" flash-sale | grep '^flash-sale'
}
for round in $(seq "$rounds"); do
  echo "round $round"
  if [ -n "${OLD_SERVER:-}" ]; then
    echo -n "old, RUST_LOG=warn: "
    plain "$OLD_SERVER"
    echo -n "new, RUST_LOG=warn: "
    plain "$CARGO_TARGET_DIR/release/myevents"
  fi
  echo -n "no endpoint:       "
  sale -u OTEL_EXPORTER_OTLP_ENDPOINT
  echo -n "every span, gRPC:  "
  sale OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$grpc" OTEL_SERVICE_NAME=myevents-bench
done
