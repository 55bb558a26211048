#!/usr/bin/env bash
# Replicas of the bookings service on PostgreSQL and RabbitMQ (issue 17): a fresh database, then
# `myevents-bench scale-out` (one hot event, and a sale spread over 1,000 events, with 1 and
# then 2 bookings processes). Extra arguments go to myevents-bench (e.g. --seconds 10,
# --replicas 3, --events 1000).
#   bench/scale-out.sh [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# shellcheck source=scripts/services.sh
source scripts/services.sh
trap stop_started_servers EXIT
ensure_build_tools
ensure_postgres
ensure_rabbitmq
cargo build --release --quiet -p myevents -p bench --features myevents/full
database="myevents_bench_$$"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $database"
drop() {
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
  stop_started_servers
}
trap drop EXIT
MYEVENTS_STORAGE_URL="postgres://postgres@127.0.0.1:5432/$database" \
  "$CARGO_TARGET_DIR/release/myevents-bench" --server "$CARGO_TARGET_DIR/release/myevents" \
  --data-dir "$CARGO_TARGET_DIR" --broker "amqp://guest:guest@127.0.0.1:5672/%2f" scale-out "$@"
