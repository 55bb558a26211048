use platform::openapi::{Op, operation};
use serde_json::{Value, json};

const ID: &[(&str, &str)] = &[("id", "the event's ID")];

/// The `paths` of this service's OpenAPI document.
pub fn paths() -> Value {
    let location_body = json!({"Name": "Opera House", "Address": "1 Quay St", "Country": "AU",
        "OpenTime": 9, "CloseTime": 23, "Halls": [{"name": "Main", "location": "ground floor", "capacity": 1500}]});
    let event_body = json!({"Name": "Tosca", "Duration": 150, "StartDate": 1767225600,
        "EndDate": 1767234600, "Location": {"ID": "<location id>"}, "Hall": "Main", "Capacity": 1000});
    json!({
        "/events": {
            "get": operation(Op { summary: "All events, in creation order", path_params: &[],
                query_params: &[("limit", "at most this many"), ("after", "only events created after the event with this ID")],
                body: None, auth: false, responses: &[(200, "events"), (400, "bad paging parameters")] }),
            "post": operation(Op { summary: "Create an event (admin)", path_params: &[], query_params: &[],
                body: Some(event_body), auth: true,
                responses: &[(201, "the stored event with its new ID"), (400, "malformed JSON"), (401, "not signed in"),
                             (403, "not an admin"), (413, "body too large"), (422, "invalid values, unknown location or hall")] }),
        },
        "/events/{id}": {
            "get": operation(Op { summary: "One event", path_params: ID, query_params: &[], body: None, auth: false,
                responses: &[(200, "the event"), (404, "unknown ID")] }),
            "delete": operation(Op { summary: "Cancel an event (admin); it is kept as cancelled", path_params: ID,
                query_params: &[], body: None, auth: true,
                responses: &[(200, "the event, now cancelled"), (401, "not signed in"), (403, "not an admin"), (404, "unknown ID")] }),
        },
        "/events/id/{id}": {
            "get": operation(Op { summary: "One event (the reference's search route)", path_params: ID, query_params: &[],
                body: None, auth: false, responses: &[(200, "the event"), (404, "unknown ID")] }),
        },
        "/events/name/{name}": {
            "get": operation(Op { summary: "The first event with this name (the reference's search route)",
                path_params: &[("name", "the event's name")], query_params: &[], body: None, auth: false,
                responses: &[(200, "the event"), (404, "no such name")] }),
        },
        "/events/{id}/sales": {
            "get": operation(Op { summary: "Seats sold, bookings and cancellations of one event (admin)", path_params: ID,
                query_params: &[], body: None, auth: true,
                responses: &[(200, "the figures"), (401, "not signed in"), (403, "not an admin"), (404, "unknown ID")] }),
        },
        "/sales": {
            "get": operation(Op { summary: "Sales figures of every event with bookings (admin)", path_params: &[],
                query_params: &[], body: None, auth: true,
                responses: &[(200, "the figures"), (401, "not signed in"), (403, "not an admin")] }),
        },
        "/locations": {
            "get": operation(Op { summary: "All locations", path_params: &[], query_params: &[], body: None, auth: false,
                responses: &[(200, "locations")] }),
            "post": operation(Op { summary: "Create a location with its halls (admin)", path_params: &[], query_params: &[],
                body: Some(location_body), auth: true,
                responses: &[(201, "the stored location with its new ID"), (400, "malformed JSON"), (401, "not signed in"),
                             (403, "not an admin"), (422, "invalid values")] }),
        },
        "/locations/{id}": {
            "get": operation(Op { summary: "One location", path_params: &[("id", "the location's ID")], query_params: &[],
                body: None, auth: false, responses: &[(200, "the location"), (404, "unknown ID")] }),
        },
    })
}
