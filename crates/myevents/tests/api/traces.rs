//! Traces against a real OTLP receiver (deploy/test/otlp/receiver.py, on PyPI's
//! opentelemetry-proto and grpcio): a booking whose request carries a W3C `traceparent` is
//! exported as a span of that trace, child of the caller's span, over gRPC and over
//! HTTP/protobuf; the services that apply the booking's event do so in spans of the same trace.
//! With every service in a process of its own, over RabbitMQ and over Kafka, the booking is one
//! trace from the bookings service's request to the notifications service's mail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OwnServer, TestServer, eventually, until_some, within};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A running receiver and the ports it chose.
struct Receiver {
    _process: OwnServer,
    grpc_port: u16,
    http_port: u16,
}

/// The receiver, on ports the system chose (it reports them in a file of its own, as a MyEvents
/// server does), writing to `spans`.
async fn receiver(spans: &Path) -> Receiver {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/test/otlp/receiver.py");
    let ports_file = spans.with_extension("ports");
    let process = OwnServer::spawn(
        Command::new("python3")
            .arg(script)
            .args(["0", "0"])
            .arg(spans)
            .arg(&ports_file),
        "python3 with opentelemetry-proto and grpcio (scripts/test installs them)",
    );
    // A Python server takes a while to start.
    let ports = until_some(
        Duration::from_secs(60),
        "the receiver reports its ports",
        || {
            let text = std::fs::read_to_string(&ports_file).ok()?;
            let mut ports = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((ports.next()??, ports.next()??))
        },
    )
    .await;
    Receiver {
        _process: process,
        grpc_port: ports.0,
        http_port: ports.1,
    }
}

fn spans(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Books a seat of `event` as a guest, in a request that continues the test's trace: the
/// booking's ID.
async fn book_in_trace(server: &TestServer, event: &str) -> String {
    let booked = server
        .client
        .post(server.url(&format!("/events/{event}/bookings")))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&json!({"seats": 1, "email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status(), StatusCode::CREATED);
    let answer: Value = booked.json().await.unwrap();
    answer["ID"].as_str().unwrap().to_owned()
}

/// Books with a `traceparent`, stops the server (which flushes its spans) and returns what the
/// receiver got.
async fn booking_spans(protocol: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let receiver = receiver(&file).await;
    let port = if protocol == "grpc" {
        receiver.grpc_port
    } else {
        receiver.http_port
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "myevents-test"),
        // Trace and span IDs join the fields of the request span in JSON logs.
        ("MYEVENTS_LOG_FORMAT", "json"),
    ];
    let mut s = TestServer::start_in(dir.path(), &env).await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    book_in_trace(&s, &event).await;
    // The batch exporter sends every 5 s: wait for a consumer's span of the booking, which
    // ends only after the apply, rather than stopping the server while one is still applying.
    eventually("a consumer's span of the booking is exported", || {
        let file = file.clone();
        async move {
            spans(&file)
                .iter()
                .any(|s| s["trace_id"] == TRACE_ID && s["name"] == "apply eventBooked")
        }
    })
    .await;
    assert!(s.stop().success(), "{}", s.log());
    spans(&file)
}

async fn booking_is_a_child_of_the_callers_span(protocol: &str) {
    let spans = booking_spans(protocol).await;
    let booking = spans
        .iter()
        .find(|s| s["name"] == "POST /events/{id}/bookings")
        .unwrap_or_else(|| panic!("no booking span in {spans:?}"));
    assert_eq!(booking["trace_id"], TRACE_ID, "{booking}");
    assert_eq!(booking["parent_span_id"], PARENT_ID, "{booking}");
    assert_eq!(booking["service"], "myevents-test", "{booking}");
    assert_eq!(booking["attributes"]["http.route"], "/events/{id}/bookings");
    assert_eq!(booking["attributes"]["http.response.status_code"], 201);
    // Every service that consumes eventBooked applied it in the same trace, as a child of a
    // span of that trace (the booking's or one inside it).
    let in_trace: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == TRACE_ID).collect();
    let applied: Vec<&&Value> = in_trace
        .iter()
        .filter(|s| s["name"] == "apply eventBooked")
        .collect();
    assert!(!applied.is_empty(), "no apply span in {spans:?}");
    for apply in applied {
        assert!(
            in_trace
                .iter()
                .any(|s| s["span_id"] == apply["parent_span_id"]),
            "{apply} has no parent in {in_trace:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_continues_the_callers_trace_over_grpc() {
    booking_is_a_child_of_the_callers_span("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booking_continues_the_callers_trace_over_http_protobuf() {
    booking_is_a_child_of_the_callers_span("http/protobuf").await;
}

/// The one span of `service` named `name` in `spans`.
fn span<'s>(spans: &'s [Value], service: &str, name: &str) -> &'s Value {
    let found: Vec<&Value> = spans
        .iter()
        .filter(|s| s["service"] == service && s["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name:?} of {service} in {spans:#?}");
    found[0]
}

/// Asserts that `child` is a span of the test's trace whose parent is `parent`.
fn assert_child(child: &Value, parent: &Value) {
    assert_eq!(child["trace_id"], TRACE_ID, "{child}");
    assert_eq!(
        child["parent_span_id"], parent["span_id"],
        "{child} is not a child of {parent}"
    );
}

/// Every service in a process of its own on the broker `broker` names, each exporting to one
/// receiver: one guest booking with a `traceparent` is one trace, bookings' request → its store
/// transaction → the relay's publish → the events and notifications services' applies → the
/// mail's sending.
async fn one_booking_is_one_trace_across_processes(broker: &[(&str, &str)]) {
    let receiver_dir = tempfile::tempdir().unwrap();
    let file = receiver_dir.path().join("spans.jsonl");
    let receiver = receiver(&file).await;
    let endpoint = format!("http://127.0.0.1:{}", receiver.grpc_port);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |dir: &tempfile::TempDir, role: &'static str| {
        let service = format!("myevents-{role}");
        let mut env = vec![
            ("MYEVENTS_ROLES", role),
            ("MYEVENTS_JWT_SECRET", "one-secret-for-every-service"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", service.as_str()),
            // Sooner than the default 5 s, so the test does not wait for the batches.
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ];
        env.extend_from_slice(broker);
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let path = dir.path().to_owned();
        async move {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            TestServer::start_in(&path, &env).await
        }
    };
    let users = start(&dirs[0], "users").await;
    let events = start(&dirs[1], "events").await;
    let bookings = start(&dirs[2], "bookings").await;
    let notifications = start(&dirs[3], "notifications").await;

    let admin = users.admin_token().await;
    let location = events.create_location(&admin, 10).await;
    let r = events
        .post("/events", Some(&admin),
              json!({"Name": "Traced", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = r.json::<Value>().await.unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    bookings.wait_bookable(&event).await;
    let booking_id = book_in_trace(&bookings, &event).await;

    // Every process exports on its own schedule: wait for each span of the path.
    let wanted = [
        ("myevents-bookings", "POST /events/{id}/bookings"),
        ("myevents-bookings", "store book"),
        ("myevents-bookings", "publish eventBooked"),
        ("myevents-notifications", "send mail"),
        ("myevents-notifications", "apply eventBooked"),
        ("myevents-events", "apply eventBooked"),
    ];
    let exported = |spans: &[Value]| {
        wanted.iter().all(|(service, name)| {
            spans.iter().any(|s| {
                s["trace_id"] == TRACE_ID && s["service"] == *service && s["name"] == *name
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !exported(&spans(&file)) {
        assert!(
            std::time::Instant::now() < deadline,
            "not all of {wanted:?} exported within 60 s; the receiver has {:#?}\n{}",
            spans(&file)
                .iter()
                .map(|s| (&s["service"], &s["name"], &s["trace_id"]))
                .collect::<Vec<_>>(),
            notifications.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop((users, events, bookings, notifications));

    let all = spans(&file);
    let trace: Vec<Value> = all
        .iter()
        .filter(|s| s["trace_id"] == TRACE_ID)
        .cloned()
        .collect();
    let request = span(&trace, "myevents-bookings", "POST /events/{id}/bookings");
    assert_eq!(request["parent_span_id"], PARENT_ID, "{request}");
    let store = span(&trace, "myevents-bookings", "store book");
    assert_child(store, request);
    let publish = span(&trace, "myevents-bookings", "publish eventBooked");
    assert_child(publish, store);
    let counted = span(&trace, "myevents-events", "apply eventBooked");
    assert_child(counted, publish);
    let mailed = span(&trace, "myevents-notifications", "apply eventBooked");
    assert_child(mailed, publish);
    let mail = span(&trace, "myevents-notifications", "send mail");
    assert_child(mail, mailed);
    assert_eq!(
        mail["attributes"]["message_id"],
        format!("booked-{booking_id}"),
        "{mail}"
    );
}

#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_booking_is_one_trace_across_processes_over_rabbitmq() {
    let url = crate::helpers::amqp_url();
    let namespace = format!("traces-{}.", uuid::Uuid::now_v7().simple());
    one_booking_is_one_trace_across_processes(&[
        ("MYEVENTS_BROKER_URL", &url),
        ("MYEVENTS_BROKER_NAMESPACE", &namespace),
    ])
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_booking_is_one_trace_across_processes_over_kafka() {
    let kafka = crate::helpers::kafka_url();
    let namespace = format!("traces-{}.", uuid::Uuid::now_v7().simple());
    one_booking_is_one_trace_across_processes(&[
        ("MYEVENTS_BROKER_URL", &kafka),
        ("MYEVENTS_BROKER_NAMESPACE", &namespace),
    ])
    .await;
}

/// The spans of `trace` in the receiver's `file`, once every `(name, count)` of `wanted` is
/// there (each process exports on its own schedule).
async fn trace_with(file: &Path, trace: &str, wanted: &[(&str, usize)]) -> Vec<Value> {
    let in_trace = || -> Vec<Value> {
        spans(file)
            .into_iter()
            .filter(|s| s["trace_id"] == trace)
            .collect()
    };
    let complete = |spans: &[Value]| {
        wanted
            .iter()
            .all(|(name, count)| spans.iter().filter(|s| s["name"] == *name).count() >= *count)
    };
    let what = format!("not all of {wanted:?} in trace {trace} within 60 s");
    within(Duration::from_secs(60), &what, || {
        let spans = in_trace();
        let found = if complete(&spans) {
            Ok(())
        } else {
            let names: Vec<&Value> = spans.iter().map(|s| &s["name"]).collect();
            Err(format!("{names:#?}"))
        };
        async move { found }
    })
    .await;
    in_trace()
}

/// `DELETE path` as the organiser, in a request that continues trace `trace`; it must answer 200.
async fn delete_in_trace(server: &TestServer, path: &str, admin: &str, trace: &str) {
    let deleted = server
        .client
        .delete(server.url(path))
        .bearer_auth(admin)
        .header("traceparent", format!("00-{trace}-{PARENT_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
}

/// The spans of `spans` named `name`.
fn named<'s>(spans: &'s [Value], name: &str) -> Vec<&'s Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// Asserts that `child`'s parent is one of `parents`.
fn assert_child_of_one(child: &Value, parents: &[&Value]) {
    assert!(
        parents
            .iter()
            .any(|p| p["span_id"] == child["parent_span_id"]),
        "{child} is not a child of any of {parents:#?}"
    );
}

/// On SQLite, whose writes run on a thread of their own, and for what a consumer causes in
/// turn: a customer's cancellation is one trace down to the events service's apply, and an
/// organiser's cancellation of an event is one trace down to the mails of the bookings it
/// released, through the bookings service's apply of `eventCancelled` and the
/// `bookingCancelled`s that apply emits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_and_the_bookings_they_release_are_traced() {
    const CANCEL_BOOKING: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
    const CANCEL_EVENT: &str = "6bf92f3577b34da6a3ce929d0e0e4736";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spans.jsonl");
    let receiver = receiver(&file).await;
    let endpoint = format!("http://127.0.0.1:{}", receiver.grpc_port);
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "myevents-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let s = TestServer::start_in(dir.path(), &env).await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let mut bookings = Vec::new();
    for email in ["ann@example.com", "bob@example.com", "cy@example.com"] {
        let r = s.book(&event, 1, email).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        bookings.push(
            r.json::<Value>().await.unwrap()["ID"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    let path = format!("/bookings/{}", bookings[0]);
    delete_in_trace(&s, &path, &admin, CANCEL_BOOKING).await;
    let trace = trace_with(
        &file,
        CANCEL_BOOKING,
        &[
            ("store cancel booking", 1),
            ("publish bookingCancelled", 1),
            ("apply bookingCancelled", 2),
        ],
    )
    .await;
    let store = named(&trace, "store cancel booking");
    let publish = named(&trace, "publish bookingCancelled");
    assert_child_of_one(publish[0], &store);
    for apply in named(&trace, "apply bookingCancelled") {
        assert_child_of_one(apply, &publish);
    }

    delete_in_trace(&s, &format!("/events/{event}"), &admin, CANCEL_EVENT).await;
    // Two bookings were still active: two bookingCancelled, each applied by the events and
    // the notifications services, each mailed.
    let trace = trace_with(
        &file,
        CANCEL_EVENT,
        &[
            ("publish eventCancelled", 1),
            ("apply eventCancelled", 1),
            ("publish bookingCancelled", 2),
            ("apply bookingCancelled", 4),
            ("send mail", 2),
        ],
    )
    .await;
    let store = named(&trace, "store cancel event");
    let publish = named(&trace, "publish eventCancelled");
    assert_child_of_one(publish[0], &store);
    let applied = named(&trace, "apply eventCancelled");
    for apply in &applied {
        assert_child_of_one(apply, &publish);
    }
    let released = named(&trace, "publish bookingCancelled");
    for publish in &released {
        assert_child_of_one(publish, &applied);
    }
    let applies = named(&trace, "apply bookingCancelled");
    for apply in &applies {
        assert_child_of_one(apply, &released);
    }
    for mail in named(&trace, "send mail") {
        assert_child_of_one(mail, &applies);
    }
}
