//! HTTP hardening: security headers, request IDs, and clients that hold connections open (slow
//! headers, slow bodies, too many connections). Each test configures short limits so that it
//! ends in a few seconds.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestServer, assert_error};

fn address(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes); what it sent, and whether
/// it closed.
fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Sends bytes one a second until the server answers or closes the connection; how long that
/// took and what it answered, or `None` if it was still waiting after `limit`.
fn trickle(stream: &mut TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            // An answer (408) or the end: either way the server stopped waiting.
            Ok(n) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some((started.elapsed(), String::new())),
        }
        if stream.write_all(b"a").is_err() {
            return Some((started.elapsed(), String::new()));
        }
    }
    None
}

#[tokio::test]
async fn every_response_carries_security_headers_and_no_server_version() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>MyEvents</title>",
    )
    .unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_WEB_DIR", web.to_str().unwrap())]).await;
    for path in ["/", "/events", "/no/such/route"] {
        let r = s.get(path, None).await;
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp:?}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert!(
            r.headers().get("server").is_none(),
            "{path}: no Server header"
        );
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{path}: HSTS only over HTTPS"
        );
    }
}

#[tokio::test]
async fn a_request_id_is_honoured_or_made_and_every_error_body_names_it() {
    let s = TestServer::start().await;
    let with = |id: &str| {
        s.client
            .get(s.url("/events/no-such-event"))
            .header("x-request-id", id)
    };

    let r = with("trace-4bf92f3577b34da6").send().await.unwrap();
    let error = assert_error(r, StatusCode::NOT_FOUND).await;
    assert_eq!(error["RequestID"], "trace-4bf92f3577b34da6");

    // An ID that could forge log lines, or is too long, is replaced by one of our own.
    for bad in ["two words", &"x".repeat(200)] {
        let r = with(bad).send().await.unwrap();
        let error = assert_error(r, StatusCode::NOT_FOUND).await;
        let made = error["RequestID"].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(made).is_ok(), "{error}");
    }

    // Success carries it in the header; each request gets its own.
    let a = s.get("/events", None).await;
    let b = s.get("/events", None).await;
    assert_eq!(a.status(), StatusCode::OK);
    assert_ne!(a.headers()["x-request-id"], b.headers()["x-request-id"]);

    // The fallbacks, 405, 413 and 400 are JSON with the ID too (assert_error checks it).
    let r = s.post("/no/such/route", None, json!({})).await;
    assert_error(r, StatusCode::NOT_FOUND).await;
    let r = s.delete("/users", None).await;
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
    let huge = json!({"Email": "x".repeat(100 * 1024)});
    assert_error(
        s.post("/users", None, huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let r = s
        .client
        .post(s.url("/users"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST).await;
}

/// A client that sends its request line and headers a byte a second (slow loris) is cut off
/// once `http.header_timeout_secs` has passed.
#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut stream = TcpStream::connect(address(&s)).unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let closed = trickle(&mut stream, Duration::from_secs(15));
    let (after, _) = closed.expect("the connection was still open after 15 s of trickling");
    assert!(after < Duration::from_secs(8), "cut off after {after:?}");
}

/// A client that sends its body a byte a second gets 408 once `http.body_timeout_secs` has
/// passed, and its connection is closed.
#[tokio::test]
async fn a_client_trickling_its_body_gets_408_and_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_BODY_TIMEOUT_SECS", "2")]).await;
    let mut stream = TcpStream::connect(address(&s)).unwrap();
    stream
        .write_all(b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let cut = trickle(&mut stream, Duration::from_secs(15));
    let (after, start) = cut.expect("still reading the body after 15 s");
    assert!(after < Duration::from_secs(8), "cut off after {after:?}");
    let (rest, closed) = read_to_close(&mut stream, Duration::from_secs(5));
    let answer = start + &rest;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(body["RequestID"].is_string(), "{body}");
    assert!(closed, "the connection is closed after the 408");
}

/// Sends one request on `stream` and reads its answer's status line, leaving the connection
/// open.
fn served(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
}

/// With `http.max_connections` open, another connection is closed without an answer; once
/// one closes, a new one is served.
#[tokio::test]
async fn connections_beyond_the_cap_are_refused_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::spawn_in(dir.path(), &[("MYEVENTS_MAX_CONNECTIONS", "2")]).await;
    // Waits with connections that close, so that no pooled one holds a place.
    let started = Instant::now();
    while !TcpStream::connect(address(&s)).is_ok_and(|mut c| served(&mut c)) {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut first = TcpStream::connect(address(&s)).unwrap();
    let mut second = TcpStream::connect(address(&s)).unwrap();
    assert!(served(&mut first) && served(&mut second));
    let mut third = TcpStream::connect(address(&s)).unwrap();
    assert!(!served(&mut third), "a third connection beyond a cap of 2");
    let (answer, closed) = read_to_close(&mut third, Duration::from_secs(5));
    assert!(closed && answer.is_empty(), "{answer:?}");

    drop(first);
    let started = Instant::now();
    while !TcpStream::connect(address(&s)).is_ok_and(|mut c| served(&mut c)) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a place freed up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served(&mut second), "the open connection is still served");
}

/// More requests at once than the process takes on: the excess is answered 503 with
/// `Retry-After` and a JSON error, every booking answered 201 is in the inventory and no
/// refused one is, health probes are answered all along, and the next request after the burst
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_beyond_the_slots_is_shed_with_retry_after_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // One slot and no queue: any request that arrives while another is served is refused.
    let s = TestServer::start_in(
        dir.path(),
        &[
            ("MYEVENTS_MAX_IN_FLIGHT", "1"),
            ("MYEVENTS_MAX_WAITING", "0"),
        ],
    )
    .await;
    let admin = s.admin_token().await;
    let capacity = 10_000;
    let event = s.bookable_event(&admin, capacity).await;
    let url = s.url(&format!("/events/{event}/bookings"));

    let mut seats_confirmed = 0;
    let mut shed = 0;
    // Bursts of 50 at once until some are shed (the first one nearly always is).
    for burst in 0..20 {
        let answers = futures::future::join_all((0..50).map(|i| {
            s.client
                .post(url.as_str())
                // From a page on another origin: the refusal must be readable there too.
                .header("origin", "http://shop.example")
                .json(&json!({"seats": 1 + i % 2, "email": format!("b{burst}-{i}@example.com")}))
                .send()
        }));
        let ready = s.get("/health/ready", None);
        let (answers, ready) = tokio::join!(answers, ready);
        assert_eq!(ready.status(), StatusCode::OK, "health probes are not shed");
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.expect("an answer");
            match answer.status() {
                StatusCode::CREATED => seats_confirmed += 1 + i as i64 % 2,
                StatusCode::SERVICE_UNAVAILABLE => {
                    let header = |name: &str| {
                        let value = answer.headers().get(name)?;
                        Some(value.to_str().unwrap().to_lowercase())
                    };
                    assert_eq!(header("retry-after").as_deref(), Some("1"));
                    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
                    assert!(
                        header("access-control-expose-headers")
                            .is_some_and(|exposed| exposed.contains("retry-after")),
                        "a page on another origin may read Retry-After"
                    );
                    let error = assert_error(answer, StatusCode::SERVICE_UNAVAILABLE).await;
                    assert!(error["error"].as_str().unwrap().contains("busy"), "{error}");
                    shed += 1;
                }
                other => panic!("unexpected {other}: {}", answer.text().await.unwrap()),
            }
        }
        if shed > 0 {
            break;
        }
    }
    assert!(
        shed > 0,
        "no request was shed in 20 bursts of 50 with one slot"
    );
    assert_eq!(
        s.available(&event).await,
        i64::from(capacity) - seats_confirmed,
        "the inventory holds exactly the bookings answered 201"
    );
    assert!(
        s.metric("myevents_http_requests_shed_total{reason=\"queue_full\"}")
            .await
            >= f64::from(shed)
    );
    let after = s.book(&event, 1, "after@example.com").await;
    assert_eq!(
        after.status(),
        StatusCode::CREATED,
        "served once the burst is over"
    );
}
