#!/usr/bin/env bash
# How long a newcomer waits: from a fresh clone with an empty cargo cache (no downloaded crates,
# no build) and an empty npm cache to `scripts/start` answering /health/ready. Debian packages
# (protoc) are taken as installed; the README's start command installs them when missing.
#   bench/cold-start.sh [COMMIT]     (default HEAD of this checkout)
# Prints the seconds to the first answer, and where they went. Stops the server afterwards.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="${1:-HEAD}"
work="$(mktemp -d /tmp/myevents-cold-start.XXXXXX)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -- -"$server" 2>/dev/null || kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/checks.sh
source "$repo/scripts/checks.sh"


git clone -q "$repo" "$work/clone"
git -C "$work/clone" checkout -q "$commit"
# Empty caches of the newcomer's own: crates are downloaded again and everything is compiled.
export CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/target" npm_config_cache="$work/npm-cache"
unset RUSTC_WRAPPER
api="$(free_port)" metrics="$(free_port)" grpc="$(free_port)"
export MYEVENTS_GRPC_LISTEN="127.0.0.1:$grpc"

start=$(date +%s.%N)
# A process group of its own, so that the whole of scripts/start (cargo run and the server) stops.
setsid "$work/clone/scripts/start" --listen "127.0.0.1:$api" --metrics-listen "127.0.0.1:$metrics" \
  --data-dir "$work/data" >"$work/start.log" 2>&1 &
server=$!
ready=""
while kill -0 "$server" 2>/dev/null; do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api/health/ready")" = 200 ]; then
    ready=$(date +%s.%N)
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  tail -30 "$work/start.log" >&2
  echo "scripts/start stopped before answering" >&2
  exit 1
fi
seconds=$(python3 -c "print(round($ready - $start))")
web=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$api/")
crates=$(find "$CARGO_HOME/registry/cache" -name '*.crate' 2>/dev/null | wc -l)
units=$(find "$CARGO_TARGET_DIR/start/.fingerprint" -maxdepth 1 -mindepth 1 | wc -l)
echo "commit $(git -C "$work/clone" rev-parse --short=12 HEAD) on $(nproc) cores: /health/ready after ${seconds} s"
echo "  web UI at /: HTTP $web; $crates crates downloaded; $units units compiled (profile start)"
