#!/usr/bin/env bash
# The web UI's API types (web/src/api-schema.ts) are generated from the server's OpenAPI
# document, so that the UI and the server cannot drift apart:
#   scripts/api-types.sh [BINARY]           writes the file again from `BINARY openapi`
#   scripts/api-types.sh --check [BINARY]   fails when the committed file differs (scripts/test)
# BINARY defaults to $CARGO_TARGET_DIR/debug/myevents. openapi-typescript (npm) is installed into
# web/api-types/ when missing. Ends with "api-types: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=scripts/checks.sh
source scripts/checks.sh
mode=write
if [ "${1:-}" = "--check" ]; then mode=check; shift; fi
binary="${1:-${CARGO_TARGET_DIR:-$PWD/target}/debug/myevents}"

if [ ! -d web/api-types/node_modules/openapi-typescript ]; then
  (cd web/api-types && npm ci --no-audit --no-fund --silent) || { bad "npm ci in web/api-types"; summary api-types; exit 1; }
fi
document="$(mktemp)"
trap 'rm -f "$document"' EXIT
if "$binary" openapi >"$document"; then ok "$binary openapi prints the document"; else bad "$binary openapi"; fi
if [ "$mode" = check ]; then
  if node web/api-types/generate.mjs --check <"$document"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
else
  check "web/src/api-schema.ts written" node web/api-types/generate.mjs <"$document"
fi
summary api-types
