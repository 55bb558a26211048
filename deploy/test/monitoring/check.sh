#!/usr/bin/env bash
# Checks of deploy/prometheus and deploy/grafana that need no MyEvents running:
#   promtool check config   the Compose configuration (and the rule files it loads)
#   k8s.py                  deploy/k8s/monitoring is valid and carries every rule file and
#                           dashboard; the Kubernetes configuration, in a real Prometheus,
#                           finds each pod of the manifests once, as its service, on its
#                           metrics port
#   promtool check rules    the recording rules and alerts
#   promql.py alerts        every alert has a severity, summary, description and runbook, and
#                           unit tests where it fires and where it stays silent
#   promtool test rules     those unit tests (deploy/prometheus/tests)
#   promtool check rules    every dashboard query, as a recording rule: PromQL promtool parses
#   check.mjs               every dashboard against Grafana's schema (npm @grafana/schema, tsc)
# Installs what is missing (Debian prometheus and kubectl, PyPI kubernetes-validate, the npm
# packages of deploy/grafana/test). Prints
# `ok …` / `FAILED …` per check and `monitoring: N passed, N failed`; exits non-zero on failure.
# deploy/test/monitoring/live.py is the live half: a real Prometheus scraping a sale.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
prom="$root/deploy/prometheus"
# shellcheck source=scripts/services.sh
source "$root/scripts/services.sh"
# shellcheck source=scripts/checks.sh
source "$root/scripts/checks.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# checker WHAT COMMAND…: a command that prints `ok …` / `FAILED …` lines of its own: each one
# counts, with the details under it; a failure without such a line counts as WHAT failing.
checker() {
  local what="$1" line before="$failed" rc=0
  shift
  "$@" >"$tmp/log" 2>&1 || rc=$?
  while IFS= read -r line; do
    case "$line" in
      "ok     "*) ok "${line#ok     }" ;;
      "FAILED "*) bad "${line#FAILED }" ;;
      *) echo "$line" ;;
    esac
  done <"$tmp/log"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then bad "$what"; fi
}

if ! ensure_prometheus; then
  bad "Debian prometheus (promtool and the server) is installed"
  summary monitoring
  exit 1
fi

run "promtool check config deploy/prometheus/prometheus.yml (and its rule files)" \
  promtool check config "$prom/prometheus.yml"
if ! command -v kubectl >/dev/null 2>&1 && ! apt_install kubectl; then
  bad "kubectl is installed (for k8s.py)"
elif ! command -v kubernetes-validate >/dev/null 2>&1 \
  && ! python3 -m pip install -q --disable-pip-version-check kubernetes-validate; then
  bad "kubernetes-validate is installed (for k8s.py)"
else
  checker "deploy/test/monitoring/k8s.py" python3 "$here/k8s.py"
fi
run "promtool check rules deploy/prometheus/rules/*.yml" promtool check rules "$prom"/rules/*.yml
run "every alert has severity, summary, description, runbook, and tests that fire and stay silent" \
  python3 "$here/promql.py" alerts
run "promtool test rules deploy/prometheus/tests/*.yml" promtool test rules "$prom"/tests/*.yml
dashboard_queries() {
  python3 "$here/promql.py" rule-file "$tmp/dashboard-queries.yml" \
    && promtool check rules "$tmp/dashboard-queries.yml"
}
run "promtool parses every dashboard query (variables given values)" dashboard_queries

grafana_test="$root/deploy/grafana/test"
if [ -x "$grafana_test/node_modules/.bin/tsc" ] \
  || (cd "$grafana_test" && npm ci --no-audit --no-fund >"$tmp/npm" 2>&1); then
  checker "deploy/grafana/test/check.mjs" node "$grafana_test/check.mjs"
else
  bad "npm ci in deploy/grafana/test"
  cat "$tmp/npm"
fi

summary monitoring
