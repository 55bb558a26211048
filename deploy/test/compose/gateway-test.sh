#!/usr/bin/env bash
# shellcheck disable=SC2317 # checks are functions that check() calls by name
# Checks the gateway's routing: deploy/gateway/default.conf.template in Debian's nginx on
# 127.0.0.1, in front of four stand-in upstreams that answer with their own name, and for each
# API path the upstream that must answer it — the route table of the services (README.md,
# /openapi.json of each role). Also checks that query strings, bodies and the Authorization and
# Idempotency-Key headers reach the service unchanged. Ends with "N passed, N failed".
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=deploy/test/compose/gateway.sh
source "$here/gateway.sh"
# shellcheck source=scripts/checks.sh
source "$here/../../../scripts/checks.sh"

tmp="$(mktemp -d)"
echo_pid=""
cleanup() {
  gateway_stop
  [ -n "$echo_pid" ] && kill "$echo_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT


python3 "$here/echo_upstreams.py" --ports "$tmp/ports" events bookings users web &
echo_pid=$!
for _ in $(seq 1 50); do [ -s "$tmp/ports" ] && break; sleep 0.1; done
[ -s "$tmp/ports" ] || { echo "FAILED: the stand-in upstreams did not start"; exit 1; }
port_of() { awk -v n="$1" '$1 == n { print $2 }' "$tmp/ports"; }

gw_port="$(free_port)"
gateway_start "$gw_port" "127.0.0.1:$(port_of events)" "127.0.0.1:$(port_of bookings)" \
  "127.0.0.1:$(port_of users)" "127.0.0.1:$(port_of web)" || { echo "FAILED: the gateway did not start"; exit 1; }
GW="http://127.0.0.1:$gw_port"


# answer METHOD PATH [curl args…]: the JSON the upstream echoed.
answer() {
  local method="$1" path="$2"
  shift 2
  curl -sS --max-time 5 -X "$method" "$GW$path" "$@"
}
json_field() { python3 -c 'import sys, json; print(json.load(sys.stdin).get(sys.argv[1]))' "$1" 2>/dev/null; }

routes_to() { # routes_to UPSTREAM METHOD PATH
  local got
  got="$(answer "$2" "$3" | json_field upstream)"
  [ "$got" = "$1" ] || { echo "       $2 $3 went to '${got:-nothing}', not $1"; return 1; }
}

E=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b
while read -r upstream method path; do
  check "$method $path -> $upstream" routes_to "$upstream" "$method" "$path"
done <<ROUTES
events    GET    /events
events    POST   /events
events    GET    /events/
events    GET    /events/$E
events    DELETE /events/$E
events    GET    /events/id/$E
events    GET    /events/name/Opening%20night
events    GET    /events/name/availability
events    GET    /events/name/bookings
events    GET    /events/id/availability
events    GET    /events/$E/sales
events    GET    /sales
events    GET    /locations
events    POST   /locations
events    GET    /locations/$E
bookings  POST   /events/$E/bookings
bookings  GET    /events/$E/availability
bookings  GET    /events/$E/availability/
bookings  GET    /bookings
bookings  GET    /bookings/$E
bookings  DELETE /bookings/$E?token=0123
users     POST   /users
users     GET    /users/me
users     POST   /auth/login
web       GET    /
web       GET    /index.html
web       GET    /assets/index-abc123.js
web       GET    /events-calendar
web       GET    /bookingsfoo
web       GET    /health/ready
web       GET    /openapi.json
ROUTES

query_kept() {
  [ "$(answer DELETE "/bookings/$E?token=0123" | json_field path)" \
    = "/bookings/$E?token=0123" ]
}
check "the query string reaches the service" query_kept

body_and_headers_kept() {
  local out
  out="$(answer POST "/events/$E/bookings" -H 'Content-Type: application/json' \
    -H 'Authorization: Bearer t0ken' -H 'Idempotency-Key: order-1' -d '{"seats": 2}')"
  [ "$(json_field body <<<"$out")" = '{"seats": 2}' ] \
    && [ "$(json_field authorization <<<"$out")" = 'Bearer t0ken' ] \
    && [ "$(json_field idempotency_key <<<"$out")" = 'order-1' ] \
    && [ "$(json_field host <<<"$out")" = "127.0.0.1:$gw_port" ] \
    && [ "$(json_field forwarded_for <<<"$out")" = '127.0.0.1' ]
}
check "body, Authorization, Idempotency-Key, Host and X-Forwarded-For reach the service" body_and_headers_kept

gateway_health() { [ "$(curl -sS --max-time 5 "$GW/gateway/health")" = ok ]; }
check "the gateway answers /gateway/health itself" gateway_health

request_id() { curl -sS -D - -o /dev/null --max-time 5 "$GW/events" | grep -qi '^X-Request-Id: [0-9a-f]\{32\}'; }
check "every answer carries the X-Request-Id the service was given" request_id

listens_on_loopback_only() {
  ! ss -ltnH | awk '{ print $4 }' | grep -qE "^(0\.0\.0\.0|\*|\[::\]):$gw_port$"
}
check "the test gateway listens on 127.0.0.1 only" listens_on_loopback_only

if [ "$failed" -gt 0 ]; then gateway_logs; fi
summary gateway
