#!/usr/bin/env bash
# The README's walk-through through the API, with each answer checked: run against any running
# MyEvents (one process, containers, Compose, pods). Exits non-zero at the first step that fails.
#   API=http://127.0.0.1:8181 deploy/test/walkthrough.sh
# When the services run apart without a gateway in front, EVENTS_API, BOOKINGS_API and USERS_API
# name each one (each defaults to API). Events travel between them through the broker, so the
# steps that wait for another service poll, for at most WAIT seconds (default 60).
set -euo pipefail

API="${API:-http://127.0.0.1:8181}"
EVENTS_API="${EVENTS_API:-$API}"
BOOKINGS_API="${BOOKINGS_API:-$API}"
USERS_API="${USERS_API:-$API}"
WAIT="${WAIT:-60}"
ADMIN_EMAIL="${MYEVENTS_ADMIN_EMAIL:-admin@example.com}"
ADMIN_PASSWORD="${MYEVENTS_ADMIN_PASSWORD:-admin-password}"
run="$(date +%s)-$$"

fail() { echo "walk-through FAILED: $*" >&2; exit 1; }
step() { echo "walk-through: $*"; }

# call METHOD URL [BODY [HEADER…]]: sets $status and $body.
call() {
  local method="$1" url="$2" data="${3:-}" out
  shift 3 || shift $#
  local args=(-sS -o - -w '\n%{http_code}' -X "$method" "$url" --max-time 10)
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' -d "$data")
  for header in "$@"; do args+=(-H "$header"); done
  out="$(curl "${args[@]}")" || fail "$method $url: no answer"
  status="${out##*$'\n'}"
  body="${out%$'\n'*}"
}

# expect STATUS WHAT: the last call answered STATUS.
expect() {
  [ "$status" = "$1" ] || fail "$2: expected $1, got $status: $body"
}

# field EXPR: a value out of the last body, e.g. field '["ID"]'.
field() {
  python3 -c "import sys, json; print(json.loads(sys.argv[1])$1)" "$body" 2>/dev/null \
    || fail "no $1 in $body"
}

# eventually WHAT CONDITION-COMMAND: repeats the command until it succeeds, for WAIT seconds.
eventually() {
  local what="$1"
  shift
  for _ in $(seq 1 "$((WAIT * 4))"); do
    if "$@"; then return 0; fi
    sleep 0.25
  done
  fail "$what: not within $WAIT s (last answer $status: $body)"
}

available_is() {
  call GET "$BOOKINGS_API/events/$EVENT/availability"
  [ "$status" = 200 ] && [ "$(field '["Available"]')" = "$1" ]
}

step "an organiser signs in"
call POST "$USERS_API/auth/login" "{\"Email\": \"$ADMIN_EMAIL\", \"Password\": \"$ADMIN_PASSWORD\"}"
expect 200 "admin sign-in"
ADMIN="$(field '["Token"]')"

step "a location with one hall of 3 seats, and an event in it"
call POST "$EVENTS_API/locations" "{\"Name\": \"Town Hall $run\", \"Address\": \"1 Main St\",
  \"Country\": \"NZ\", \"OpenTime\": 9, \"CloseTime\": 23,
  \"Halls\": [{\"name\": \"Main\", \"location\": \"ground floor\", \"capacity\": 3}]}" \
  "Authorization: Bearer $ADMIN"
expect 201 "create a location"
LOCATION="$(field '["ID"]')"
call POST "$EVENTS_API/events" "{\"Name\": \"Opening night $run\", \"StartDate\": 1900000000,
  \"EndDate\": 1900007200, \"Location\": {\"ID\": \"$LOCATION\"}, \"Hall\": \"Main\"}" \
  "Authorization: Bearer $ADMIN"
expect 201 "create an event"
EVENT="$(field '["ID"]')"
call GET "$EVENTS_API/events/$EVENT"
expect 200 "read the event back"

step "the bookings service learns of the event through the broker"
eventually "3 seats on sale" available_is 3

step "a guest books 2 seats; a retry with the same Idempotency-Key books nothing more"
call POST "$BOOKINGS_API/events/$EVENT/bookings" '{"seats": 2, "email": "guest@example.com"}' \
  "Idempotency-Key: order-$run"
expect 201 "a guest books 2 seats"
BOOKING="$(field '["ID"]')"
TOKEN="$(field '["Token"]')"
[ -n "$TOKEN" ] || fail "a guest booking's answer carries its token: $body"
call POST "$BOOKINGS_API/events/$EVENT/bookings" '{"seats": 2, "email": "guest@example.com"}' \
  "Idempotency-Key: order-$run"
expect 201 "the same booking request again"
[ "$(field '["ID"]')" = "$BOOKING" ] || fail "the retry made a second booking"
available_is 1 || fail "2 of 3 seats booked, but the availability says $body"

step "two more seats than are left: 409 with what is still available"
call POST "$BOOKINGS_API/events/$EVENT/bookings" '{"seats": 2, "email": "late@example.com"}'
expect 409 "overbooking"
[ "$(field '["Available"]')" = 1 ] || fail "the 409 should say 1 seat is left: $body"

step "the booking's ID alone cancels nothing; its token does, and the seats come back, once"
call DELETE "$BOOKINGS_API/bookings/$BOOKING"
expect 403 "cancelling a guest booking without its token"
call DELETE "$BOOKINGS_API/bookings/$BOOKING?token=$TOKEN"
[ "$status" = 200 ] || [ "$status" = 204 ] || fail "guest cancel: $status $body"
available_is 3 || fail "the cancelled seats did not come back: $body"

step "a customer signs up, signs in and books"
call POST "$USERS_API/users" "{\"Email\": \"ann-$run@example.com\", \"Password\": \"correct horse\", \"Name\": \"Ann\"}"
expect 201 "sign up"
call POST "$USERS_API/auth/login" "{\"Email\": \"ann-$run@example.com\", \"Password\": \"correct horse\"}"
expect 200 "customer sign-in"
ANN="$(field '["Token"]')"
call POST "$BOOKINGS_API/events/$EVENT/bookings" '{"seats": 1}' "Authorization: Bearer $ANN"
expect 201 "a signed-in booking"
call GET "$BOOKINGS_API/bookings" "" "Authorization: Bearer $ANN"
expect 200 "my bookings"
[ "$(field '[0]["Status"]')" = active ] || fail "my booking should be active: $body"

step "the organiser cancels the event: the customer's booking becomes event_cancelled"
call DELETE "$EVENTS_API/events/$EVENT" "" "Authorization: Bearer $ADMIN"
[ "$status" = 200 ] || [ "$status" = 204 ] || fail "cancel the event: $status $body"
booking_is_event_cancelled() {
  call GET "$BOOKINGS_API/bookings" "" "Authorization: Bearer $ANN"
  [ "$status" = 200 ] && [ "$(field '[0]["Status"]')" = event_cancelled ]
}
eventually "the booking follows the cancelled event" booking_is_event_cancelled
# Two bookings were made (the retry was the same one), and both were cancelled.
sales_add_up() {
  call GET "$EVENTS_API/events/$EVENT/sales" "" "Authorization: Bearer $ADMIN"
  [ "$status" = 200 ] && [ "$(field '["Bookings"]')" = 2 ] \
    && [ "$(field '["Cancellations"]')" = 2 ] && [ "$(field '["SeatsSold"]')" = 0 ]
}
eventually "the organiser's sales figures" sales_add_up

echo "walk-through passed against $API"
