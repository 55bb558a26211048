#!/usr/bin/env bash
# What the lean build of scripts/start promises (Cargo.toml features of crates/myevents): it
# compiles no broker or database-server client, it says which feature a configured backend
# needs instead of starting without it, and `--version` names the commit.
#   scripts/lean-check.sh BINARY     (BINARY: `cargo build -p myevents`, no features)
# Prints `ok …` / `FAILED …` per check and a closing "lean: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
binary="${1:?usage: lean-check.sh BINARY}"
# shellcheck source=scripts/checks.sh
source scripts/checks.sh

# The clients each backend feature brings in; none of them may be in the default build.
heavy='^(lapin|rdkafka|aws-sdk-sqs|aws-sdk-sns|aws-sdk-dynamodb|sqlx|mongodb) '
tree="$(cargo tree -p myevents -e normal --prefix none 2>&1)" || tree=""
if grep -q '^myevents ' <<<"$tree" && ! grep -qE "$heavy" <<<"$tree"; then
  ok "the default build of myevents depends on no broker or database-server client"
else
  bad "the default build depends on: $(grep -oE "$heavy" <<<"$tree" | sort -u | tr '\n' ' ')"
fi
full_tree="$(cargo tree -p myevents -e normal --prefix none --features full 2>&1)" || full_tree=""
if [ "$(grep -oE "$heavy" <<<"$full_tree" | sort -u | wc -l)" -eq 7 ]; then
  ok "--features full brings every client in"
else
  bad "--features full lacks some of: lapin rdkafka aws-sdk-sqs aws-sdk-sns aws-sdk-dynamodb sqlx mongodb"
fi

version="$("$binary" --version)"
if grep -qE '^myevents [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]{7,}\)$' <<<"$version" \
  && grep -q "$(git rev-parse --short=12 HEAD)" <<<"$version"; then
  ok "--version names the version and this checkout's commit ($version)"
else
  bad "--version: $version (HEAD is $(git rev-parse --short=12 HEAD))"
fi

data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
# refused VARIABLE VALUE FEATURE: a configuration naming a backend this build lacks stops the
# start, and the error names the feature to enable and no password.
refused() {
  local out code
  out="$(env "$1=$2" MYEVENTS_DATA_DIR="$data" timeout 20 "$binary" migrate 2>&1)"
  code=$?
  if [ "$code" -ne 0 ] && grep -q "\`$3\` feature" <<<"$out" && ! grep -q secret-pw <<<"$out"; then
    ok "$1=${2%%://*}://… stops the start and names the feature $3"
  else
    bad "$1=$2: exit $code, said: $out"
  fi
}
refused MYEVENTS_STORAGE_URL "postgres://me:secret-pw@127.0.0.1:5432/x" postgres
refused MYEVENTS_BOOKINGS_STORAGE_URL "mongodb://me:secret-pw@127.0.0.1:27017/x" mongodb
refused MYEVENTS_USERS_STORAGE_URL "dynamodb://127.0.0.1:5000?region=us-east-1" dynamodb
refused MYEVENTS_BROKER_URL "amqp://me:secret-pw@127.0.0.1:5672/%2f" rabbitmq
refused MYEVENTS_BROKER_URL "kafka://127.0.0.1:9092" kafka
refused MYEVENTS_BROKER_URL "sqs://127.0.0.1:5000" sqs

# And what it was built for still works: the embedded defaults.
if MYEVENTS_DATA_DIR="$data" timeout 20 "$binary" migrate >/dev/null 2>&1; then
  ok "the embedded defaults need no feature"
else
  bad "migrate on the embedded defaults failed"
fi

summary lean
