#!/usr/bin/env bash
# shellcheck disable=SC1090,SC1091,SC2154  # pods.env, written by podman_input.py, sets PODS, PORT_*, ADMIN_*
# The Kubernetes manifests, played for real with `podman kube play --network host`:
#   1. the all-in-one overlay (one pod, SQLite on its claim) until /health/ready answers 200,
#      then the walk-through against it;
#   2. the services overlay (a pod per role) against the host's PostgreSQL and RabbitMQ, each
#      pod on its own ports, until every pod is ready, then the walk-through through them.
# Each plays the test-only overlay of deploy/test/k8s/overlays, which changes only ports, image
# and backends (check.py checks that). podman plays the Deployments (one replica each: on the
# host's network every replica would need the same ports), their claims, ConfigMaps and Secrets;
# what it cannot play (Services, Ingress, NetworkPolicies, PodDisruptionBudgets, the
# StatefulSets) is listed as the run goes, with the reason (podman_input.py).
#
#   deploy/test/k8s/play.sh            MYEVENTS_IMAGE (default localhost/myevents:test) must
#                                      exist in the project's image store (deploy/test/image.sh)
# Needs podman and buildah (installed by podman-env.sh), kubectl, curl, psql, PyYAML, a
# PostgreSQL on 127.0.0.1:5432 that trusts user postgres, and a RabbitMQ on 127.0.0.1:5672
# with guest/guest. Exits non-zero on the first failure; removes what it made in any case.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
IMAGE="${MYEVENTS_IMAGE:-localhost/myevents:test}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
# Each step is bounded: playing (pulls nothing), the walk-through, tearing down.
PLAY_TIMEOUT=180
WALK_TIMEOUT=300
run="$(date +%s)_$$"
database="myevents_k8s_$run"
work="$(mktemp -d)"
played=()
database_made=""

# shellcheck source=deploy/test/podman-env.sh
source "$root/deploy/test/podman-env.sh"

fail() {
  echo "play FAILED: $*" >&2
  exit 1
}

# The pods' own words, when something went wrong.
show_logs() {
  local dir="$1" pod container
  for pod in $(pods_of "$dir"); do
    for container in $(podman ps -a --filter "pod=$pod" --format '{{.Names}}' 2>/dev/null); do
      echo "--- logs of $container (last 30 lines)" >&2
      podman logs --tail 30 "$container" >&2 2>&1 || true
    done
  done
}

pods_of() { (source "$1/pods.env" && printf '%s\n' "${PODS[@]}"); }

# Removes everything one play made: pods (kube down, then by name should that fail), claims'
# volumes, secrets.
tear_down() {
  local dir="$1"
  (
    source "$dir/pods.env"
    timeout 120 podman kube down "$dir/play.yaml" >/dev/null 2>&1 || true
    for pod in "${PODS[@]}"; do podman pod rm -f "$pod" >/dev/null 2>&1 || true; done
    for volume in "${VOLUMES[@]}"; do podman volume rm -f "$volume" >/dev/null 2>&1 || true; done
    for secret in "${SECRETS[@]}"; do podman secret rm "$secret" >/dev/null 2>&1 || true; done
  )
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Removing is best effort: one thing that cannot be removed must not keep the rest.
  set +e
  if [ "$status" -ne 0 ]; then
    for dir in "${played[@]}"; do show_logs "$dir"; done
  fi
  for dir in "${played[@]}"; do tear_down "$dir"; done
  if [ -n "$database_made" ]; then
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $database with (force)" >/dev/null 2>&1 || true
  fi
  drop_queues
  rm -rf "$work"
  exit "$status"
}

# The run's queues on the shared RabbitMQ (its exchanges are left: they hold nothing).
drop_queues() {
  command -v rabbitmqctl >/dev/null 2>&1 || return 0
  timeout 60 rabbitmqctl list_queues -q --no-table-headers name 2>/dev/null | grep -F "k8s-$run." \
    | while read -r queue; do
      # rabbitmqctl reads its standard input, which holds the names still to delete.
      timeout 30 rabbitmqctl delete_queue "$queue" </dev/null >/dev/null 2>&1
    done
  return 0
}

trap cleanup EXIT
trap 'exit 130' INT TERM

# play NAME OVERLAY: renders the test overlay, plays it, and leaves its settings (pods.env) in
# $work/NAME.
play() {
  local name="$1" overlay="$2" dir="$work/$1"
  mkdir -p "$dir"
  echo "== $name: rendering $overlay"
  kubectl kustomize "$overlay" | sed -e "s#localhost/myevents:test#$IMAGE#g" -e "s/@RUN@/$run/g" >"$dir/rendered.yaml"
  python3 "$here/podman_input.py" "$dir/rendered.yaml" "$dir"
  played+=("$dir")
  # A run that was killed may have left these behind.
  tear_down "$dir"
  local secret
  for secret in "$dir"/secrets/*; do
    podman secret create "$(basename "$secret")" "$secret" >/dev/null
  done
  echo "== $name: podman kube play --network host"
  timeout "$PLAY_TIMEOUT" podman kube play --network host "$dir/play.yaml" >/dev/null \
    || fail "$name: podman kube play failed"
}

# wait_ready NAME PORT…: until every port's /health/ready answers 200, for READY_TIMEOUT seconds;
# stops early when a pod's server has exited.
wait_ready() {
  local name="$1" deadline=$((SECONDS + READY_TIMEOUT)) port pending pod
  shift
  while :; do
    pending=()
    for port in "$@"; do
      curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/health/ready" || pending+=("$port")
    done
    [ "${#pending[@]}" -eq 0 ] && break
    for pod in $(pods_of "$work/$name"); do
      if podman ps -a --filter "pod=$pod" --filter status=exited --format '{{.Names}}' | grep -q -- '-myevents$'; then
        fail "$name: the server of $pod exited"
      fi
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "$name: ports ${pending[*]} not ready within $READY_TIMEOUT s"
    sleep 1
  done
  echo "== $name: every pod is ready (ports $*)"
}

walk() {
  local name="$1"
  shift
  echo "== $name: walk-through"
  (
    source "$work/$name/pods.env"
    env "$@" MYEVENTS_ADMIN_EMAIL="$ADMIN_EMAIL" MYEVENTS_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
      timeout "$WALK_TIMEOUT" "$root/deploy/test/walkthrough.sh"
  ) || fail "$name: the walk-through failed"
}

ensure_container_tools || fail "no podman"
[ -x "$root/deploy/test/walkthrough.sh" ] || fail "no deploy/test/walkthrough.sh"
podman image exists "$IMAGE" \
  || fail "no image $IMAGE in the project's store: build it with deploy/test/image.sh (build_test_image)"
# One play at a time in this image store: the pods, volumes and secrets have fixed names.
exec 9>"${MYEVENTS_CONTAINERS_DIR:-$HOME/.cache/myevents/containers}/k8s-play.lock"
flock -w 600 9 || fail "another play.sh holds the lock"

# --- all-in-one ---
play all-in-one "$here/overlays/podman-all-in-one"
source "$work/all-in-one/pods.env"
wait_ready all-in-one "$PORT_all_in_one"
# The SQLite files are on the claim's volume, which outlives the pod.
claim="$(podman volume inspect --format '{{.Mountpoint}}' "${VOLUMES[0]}")"
for file in events.db bookings.db users.db notifications.db; do
  [ -f "$claim/$file" ] || fail "all-in-one: no $file on the claim ${VOLUMES[0]}"
done
echo "== all-in-one: its SQLite files are on the claim ${VOLUMES[0]}"
walk all-in-one API="http://127.0.0.1:$PORT_all_in_one"
tear_down "$work/all-in-one"
echo "== all-in-one: torn down"

# --- services, on the host's PostgreSQL and RabbitMQ ---
psql -q -h 127.0.0.1 -U postgres -d postgres -c "create database $database" >/dev/null \
  || fail "cannot create database $database on 127.0.0.1:5432"
database_made=1
play services "$here/overlays/podman-services"
source "$work/services/pods.env"
wait_ready services "$PORT_events" "$PORT_bookings" "$PORT_users" "$PORT_notifications" "$PORT_web"
# The Secret's URL reached the pods: each service keeps its tables in its schema of this run's
# database (not in SQLite files of its own).
schemas="$(psql -h 127.0.0.1 -U postgres -d "$database" -Atc \
  "select string_agg(schema_name, ',' order by schema_name) from information_schema.schemata
   where schema_name in ('events', 'bookings', 'users', 'notifications')")"
[ "$schemas" = "bookings,events,notifications,users" ] \
  || fail "services: the schemas in $database are [$schemas], not bookings,events,notifications,users"
echo "== services: their tables are in $database (schemas $schemas)"
# API is the web pod (the UI's origin); every API call goes to the role that serves it.
walk services API="http://127.0.0.1:$PORT_web" EVENTS_API="http://127.0.0.1:$PORT_events" \
  BOOKINGS_API="http://127.0.0.1:$PORT_bookings" USERS_API="http://127.0.0.1:$PORT_users"
tear_down "$work/services"
echo "== services: torn down"
echo "play: both overlays ran and passed the walk-through"
# One test, both overlays: a failure above exits before this line, and scripts/test counts it.
echo "kube-play: 1 passed, 0 failed"
