#!/usr/bin/env bash
# Builds the UI and runs the browser tests (Playwright + Debian Chromium) against a real
# `myevents serve`. Installs what is missing. Extra arguments go to `playwright test`.
#   MYEVENTS_BIN   backend binary (default $CARGO_TARGET_DIR/debug/myevents, else <repo>/target/debug/myevents)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [ -z "${MYEVENTS_BIN:-}" ]; then
  MYEVENTS_BIN="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}/debug/myevents"
fi
export MYEVENTS_BIN
if [ ! -x "$MYEVENTS_BIN" ]; then
  echo "e2e/run.sh: backend binary not found at $MYEVENTS_BIN: build it (cargo build) or set MYEVENTS_BIN" >&2
  exit 1
fi

if [ ! -x node_modules/.bin/playwright ] || [ ! -x node_modules/.bin/vite ]; then
  npm ci --no-audit --no-fund
fi

if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

npm run build
npx playwright test -c e2e/playwright.config.ts "$@"
