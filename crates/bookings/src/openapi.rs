use platform::openapi::{Op, operation};
use serde_json::{Value, json};

/// The `paths` of this service's OpenAPI document.
pub fn paths() -> Value {
    let event = &[("id", "the event's ID")][..];
    let booking = &[("id", "the booking's ID")][..];
    json!({
        "/events/{id}/bookings": {
            "post": operation(Op {
                summary: "Book seats: as the signed-in user, or as a guest with `email`. An `Idempotency-Key` header makes a retry answer the first answer and book nothing more.",
                path_params: event, query_params: &[], body: Some(json!({"seats": 2, "email": "guest@example.com"})), auth: false,
                responses: &[(201, "the booking"), (400, "malformed JSON or Idempotency-Key"), (401, "invalid token"),
                             (404, "no such event on sale"), (409, "not enough seats or event cancelled; body has `Available`"),
                             (413, "body too large"), (422, "seats outside 1..max, missing or invalid email, or a reused Idempotency-Key")] }),
        },
        "/events/{id}/availability": {
            "get": operation(Op { summary: "Seats left: EventID, Capacity, Available, Status, MaxSeatsPerBooking",
                path_params: event, query_params: &[], body: None, auth: false,
                responses: &[(200, "the availability"), (404, "no such event on sale")] }),
        },
        "/bookings": {
            "get": operation(Op { summary: "Own bookings; an admin sees all", path_params: &[],
                query_params: &[("event", "only this event's bookings")], body: None, auth: true,
                responses: &[(200, "bookings"), (401, "not signed in")] }),
        },
        "/bookings/{id}": {
            "get": operation(Op { summary: "One booking (owner, admin, or anyone holding a guest booking's ID)",
                path_params: booking, query_params: &[], body: None, auth: false,
                responses: &[(200, "the booking"), (401, "sign in"), (403, "someone else's"), (404, "unknown ID")] }),
            "delete": operation(Op { summary: "Cancel a booking (owner or admin; a guest booking with ?email=)",
                path_params: booking, query_params: &[("email", "a guest booking's e-mail address")], body: None, auth: false,
                responses: &[(200, "the booking, now cancelled"), (401, "sign in"), (403, "someone else's"), (404, "unknown ID")] }),
        },
    })
}
