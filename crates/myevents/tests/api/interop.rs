//! Interoperability with the reference over RabbitMQ: a plain AMQP client (Python `pika`) bound
//! to the exchange receives our `eventCreated` in exactly the SPEC §4 format, and an
//! `eventCreated` it publishes in that format becomes bookable in our bookings service.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestServer, body};

fn client() -> String {
    format!(
        "{}/tests/interop/pika_client.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_amqp_client_reads_and_writes_our_events() {
    let url = std::env::var("MYEVENTS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
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
