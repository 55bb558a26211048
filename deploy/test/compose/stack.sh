#!/usr/bin/env bash
# shellcheck disable=SC2317 # checks are functions that check() calls by name
# The whole of deploy/compose.yaml on a real Docker engine (the CI runner's; machines without
# one run deploy/test/compose/smoke.sh instead): PostgreSQL, the broker, the migrations, the
# five MyEvents containers, the gateway, Prometheus, Grafana, Jaeger and Mailpit, with the image
# given. Then the README's walk-through through the gateway on the published port, and checks
# that Prometheus scrapes every service and loaded its rules, Grafana has its data source and
# dashboards, and the mails reached Mailpit. `docker compose down -v` on exit.
#
#   MYEVENTS_IMAGE=myevents:ci deploy/test/compose/stack.sh [rabbitmq|kafka]
#
# Prints `ok …` / `FAILED …` per check and `stack: N passed, N failed`; exits non-zero on failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(cd "$here/../.." && pwd)"
broker="${1:-rabbitmq}"
: "${MYEVENTS_IMAGE:?set MYEVENTS_IMAGE to the image to run}"
export MYEVENTS_IMAGE
project="myevents-stack-$$"
# shellcheck source=scripts/checks.sh
source "$deploy/../scripts/checks.sh"

finish() {
  summary "stack-$broker"
  exit $?
}
# eventually SECONDS COMMAND…: retries the command once a second until it succeeds.
eventually() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 1
  done
}
compose() { docker compose -p "$project" --project-directory "$deploy" -f "$deploy/compose.yaml" "$@"; }

# Secrets of this run only (letters and digits: they go into URLs).
secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
MYEVENTS_JWT_SECRET="$(secret)"
MYEVENTS_ADMIN_PASSWORD="$(secret)"
POSTGRES_PASSWORD="$(secret)"
MYEVENTS_DB_PASSWORD="$(secret)"
RABBITMQ_PASSWORD="$(secret)"
GRAFANA_ADMIN_PASSWORD="$(secret)"
export MYEVENTS_JWT_SECRET MYEVENTS_ADMIN_PASSWORD POSTGRES_PASSWORD MYEVENTS_DB_PASSWORD \
  RABBITMQ_PASSWORD GRAFANA_ADMIN_PASSWORD
export MYEVENTS_ADMIN_EMAIL=admin@example.com GATEWAY_PORT="${GATEWAY_PORT:-8080}"
case "$broker" in
  rabbitmq) ;;
  kafka) export COMPOSE_PROFILES=kafka MYEVENTS_BROKER_URL=kafka://kafka:9092 ;;
  *) echo "usage: stack.sh [rabbitmq|kafka]" >&2; exit 2 ;;
esac

cleanup() {
  if [ "$failed" -gt 0 ]; then compose logs --no-color --tail 80; fi
  compose down -v --remove-orphans -t 30 >/dev/null 2>&1
}
trap cleanup EXIT

if compose up -d --quiet-pull; then
  ok "docker compose up -d ($broker)"
else
  bad "docker compose up -d ($broker)"
  finish
fi

migrated() { [ "$(compose ps -a --format '{{.ExitCode}}' migrate)" = 0 ]; }
check "migrate completed (exit 0)" migrated

# The MyEvents images have no shell; the gateway's (busybox wget) asks each on the inside.
ready() { compose exec -T gateway wget -q -O /dev/null "http://$1:8181/health/ready" 2>/dev/null; }
for s in events bookings users notifications web; do
  check "$s answers /health/ready (within 180 s)" eventually 180 ready "$s"
done
gateway_up() { curl -fsS --max-time 3 "http://127.0.0.1:$GATEWAY_PORT/gateway/health" >/dev/null; }
check "the gateway answers on the published port $GATEWAY_PORT" eventually 60 gateway_up

if API="http://127.0.0.1:$GATEWAY_PORT" WAIT=120 bash "$deploy/test/walkthrough.sh"; then
  ok "the README's walk-through passes through the gateway ($broker)"
else
  bad "the README's walk-through passes through the gateway ($broker)"
fi
web_ui() { curl -fsS --max-time 5 "http://127.0.0.1:$GATEWAY_PORT/" | grep -qi '<!doctype html'; }
check "the gateway serves the web UI at /" web_ui

json() { python3 -c "import sys, json; d = json.load(sys.stdin); print($1)"; }
targets_up() {
  local down
  down="$(curl -fsS --max-time 5 http://127.0.0.1:9090/api/v1/targets \
    | json "sorted(t['labels']['job'] for t in d['data']['activeTargets'] if t['health'] != 'up')")"
  [ "$down" = "[]" ]
}
check "Prometheus scrapes every target (all up within 60 s)" eventually 60 targets_up
bookings_counted() {
  curl -fsS --max-time 5 --get http://127.0.0.1:9090/api/v1/query \
    --data-urlencode 'query=sum(myevents_http_requests_total{job="bookings",route=~"/events/.+/bookings"})' \
    | json "int(float(d['data']['result'][0]['value'][1])) if d['data']['result'] else 0" \
    | grep -qv '^0$'
}
check "Prometheus has the walk-through's bookings requests" eventually 60 bookings_counted

grafana() { curl -fsS --max-time 5 -u "admin:$GRAFANA_ADMIN_PASSWORD" "http://127.0.0.1:3000$1"; }
dashboard() { grafana "/api/dashboards/uid/$1" | grep -q "\"uid\":\"$1\""; }
for uid in myevents-overview myevents-sales myevents-messaging myevents-mail; do
  check "Grafana has the provisioned dashboard $uid" eventually 60 dashboard "$uid"
done
rules_loaded() {
  curl -fsS --max-time 5 http://127.0.0.1:9090/api/v1/rules \
    | json "sum(len(g['rules']) for g in d['data']['groups'])" | grep -qv '^0$'
}
check "Prometheus loaded the recording rules and alerts" rules_loaded
datasource() { grafana /api/datasources/uid/prometheus/health | grep -q '"status":"OK"'; }
check "Grafana's Prometheus data source answers" eventually 60 datasource
jaeger() { curl -fsS --max-time 5 http://127.0.0.1:16686/api/services | grep -q '"data"'; }
check "Jaeger answers on 127.0.0.1:16686" eventually 60 jaeger

mails() {
  [ "$(curl -fsS --max-time 5 http://127.0.0.1:8025/api/v1/messages | json "d.get('messages_count', d.get('total', 0))")" -ge 5 ]
}
check "the walk-through's mails reached Mailpit (5 or more)" eventually 60 mails

finish
