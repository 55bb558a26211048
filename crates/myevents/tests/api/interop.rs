//! Interoperability with the reference over RabbitMQ: a plain AMQP client (Python `pika`) bound
//! to the exchange receives our `eventCreated` in exactly the SPEC §4 format, and an
//! `eventCreated` it publishes in that format becomes bookable in our bookings service; so does
//! one with exactly the reference's own fields (no hall, no capacity), with the seats of its
//! location's halls, whether its `locationCreated` came first or after it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestServer, amqp_url, body, eventually};

fn client() -> String {
    format!(
        "{}/tests/interop/pika_client.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Publishes `body` as event `name` the way the reference's Go services do.
fn publish(url: &str, exchange: &str, name: &str, body: &Value) {
    let published = Command::new("python3")
        .args([&client(), "publish", url, exchange, &body.to_string(), name])
        .status()
        .expect("python3 with pika (scripts/test installs it)");
    assert!(published.success(), "publishing {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_amqp_client_reads_and_writes_our_events() {
    let url = amqp_url();
    let namespace = format!("interop-{}.", std::process::id());
    let exchange = format!("{namespace}events");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &[
            ("MYEVENTS_BROKER_URL", &url),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
        ],
    )
    .await;

    let mut listener = Command::new("python3")
        .args([&client(), "listen", &url, &exchange])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with pika (scripts/test installs it)");
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let admin = s.admin_token().await;
    let ours = s.bookable_event(&admin, 10).await;
    let received: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = listener.wait();
    assert_eq!(received["routing_key"], "eventCreated");
    assert_eq!(received["content_type"], "application/json");
    assert_eq!(received["headers"]["x-event-name"], "eventCreated");
    let event = &received["body"];
    assert_eq!(event["id"], ours.as_str());
    assert_eq!(event["name"], "Concert");
    assert_eq!(event["start_date"], "2030-03-17T17:46:40Z");
    assert_eq!(event["end_date"], "2030-03-17T19:46:40Z");
    assert!(event["location_id"].is_string());
    assert_eq!(
        (event["hall"].as_str(), event["capacity"].as_i64()),
        (Some("Main"), Some(10))
    );

    let theirs = json!({"id": "reference-event-1", "name": "From Go", "location_id": "loc-1",
                        "start_date": "2031-01-01T20:00:00Z", "end_date": "2031-01-01T22:00:00Z",
                        "hall": "Main", "capacity": 5});
    let published = Command::new("python3")
        .args([&client(), "publish", &url, &exchange, &theirs.to_string()])
        .status()
        .unwrap();
    assert!(published.success());
    s.wait_bookable("reference-event-1").await;
    let availability = body(s.get("/events/reference-event-1/availability", None).await).await;
    assert_eq!(
        (
            availability["Capacity"].as_i64(),
            availability["Available"].as_i64()
        ),
        (Some(5), Some(5))
    );
    assert_eq!(
        s.book("reference-event-1", 2, "g@example.com")
            .await
            .status(),
        StatusCode::CREATED
    );
}

/// The reference's `locationCreated` and `eventCreated` with exactly its fields: ids as its Go
/// events service makes them (an event's is 24 hex digits; a location's is the raw bytes of
/// its ObjectId, here with a NUL and a replacement character), no hall, no capacity, no
/// message id. The event has the seats of all its location's halls, and one published before
/// its location waits for it instead of being dropped or parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_references_own_events_become_bookable() {
    let url = amqp_url();
    let namespace = format!("interop-ref-{}.", std::process::id());
    let exchange = format!("{namespace}events");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &[
            ("MYEVENTS_BROKER_URL", &url),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
        ],
    )
    .await;
    let availability = |event: &'static str| {
        let s = &s;
        async move {
            let a = body(s.get(&format!("/events/{event}/availability"), None).await).await;
            (a["Capacity"].as_i64(), a["Available"].as_i64())
        }
    };

    let first_location = "\u{fffd}\0Y\u{1}k\u{fffd}x~\u{fffd}\u{7}zq";
    publish(
        &url,
        &exchange,
        "locationCreated",
        &json!({
        "id": first_location, "name": "Opera House", "address": "1 Quay St", "country": "NZ",
        "halls": [{"name": "Main", "capacity": 100},
                  {"name": "Balcony", "location": "first floor", "capacity": 20}]}),
    );
    publish(
        &url,
        &exchange,
        "eventCreated",
        &json!({
        "id": "5f1e7c9a2b3c4d5e6f708192", "name": "Tosca", "location_id": first_location,
        "start_date": "2031-01-01T20:00:00+01:00", "end_date": "2031-01-01T23:00:00+01:00"}),
    );
    s.wait_bookable("5f1e7c9a2b3c4d5e6f708192").await;
    assert_eq!(
        availability("5f1e7c9a2b3c4d5e6f708192").await,
        (Some(120), Some(120)),
        "the seats of both halls"
    );
    let booked = s.book("5f1e7c9a2b3c4d5e6f708192", 2, "g@example.com").await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    assert_eq!(
        availability("5f1e7c9a2b3c4d5e6f708192").await,
        (Some(120), Some(118))
    );

    // The event before its location: not bookable while it waits, bookable once it comes.
    let created = "myevents_events_applied_total{consumer=\"booking\",outcome=\"applied\",type=\"eventCreated\"}";
    let applied_before = s.metric(created).await;
    let late_location = "\u{fffd}late\u{fffd}\u{1f}";
    publish(
        &url,
        &exchange,
        "eventCreated",
        &json!({
        "id": "5f1e7c9a2b3c4d5e6f7081a0", "name": "La Boheme", "location_id": late_location,
        "start_date": "2031-02-01T20:00:00+01:00", "end_date": "2031-02-01T23:00:00+01:00"}),
    );
    // The bookings service has taken it in (to wait for its location) before it is looked up.
    eventually("the event is received", || async {
        s.metric(created).await == applied_before + 1.0
    })
    .await;
    let waiting = s
        .get("/events/5f1e7c9a2b3c4d5e6f7081a0/availability", None)
        .await;
    assert_eq!(waiting.status(), StatusCode::NOT_FOUND);
    publish(
        &url,
        &exchange,
        "locationCreated",
        &json!({
        "id": late_location, "name": "Town Hall", "address": "", "country": "NZ",
        "halls": [{"name": "Main", "capacity": 40}]}),
    );
    s.wait_bookable("5f1e7c9a2b3c4d5e6f7081a0").await;
    assert_eq!(
        availability("5f1e7c9a2b3c4d5e6f7081a0").await,
        (Some(40), Some(40))
    );
    let booked = s.book("5f1e7c9a2b3c4d5e6f7081a0", 3, "g@example.com").await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    assert_eq!(
        availability("5f1e7c9a2b3c4d5e6f7081a0").await,
        (Some(40), Some(37))
    );
    assert!(
        !s.log().contains("dead-lettering"),
        "nothing was parked:\n{}",
        s.log()
    );
}
