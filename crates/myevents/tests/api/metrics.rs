//! What an operator scrapes (docs/METRICS.md): after a booking has gone through every service,
//! each role's `/metrics` passes `promtool check metrics` and shows the metrics an operator acts
//! on, with the values a quiet system has (nothing waiting, nothing stuck).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, body};

/// `promtool`: `$MYEVENTS_PROMTOOL` (scripts/test sets it), else the one on the PATH.
fn promtool() -> PathBuf {
    std::env::var_os("MYEVENTS_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"))
}

/// The reference's metric, which SPEC §8 keeps under its name and labels although promtool's
/// conventions would have them otherwise (a counter named `_count`, labels in camelCase).
const REFERENCE_METRIC: &str = "myevents_bookings_count ";

/// What `promtool check metrics` says about `text`, but for the reference's own metric.
fn promtool_problems(text: &str) -> Vec<String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): `source scripts/services.sh; ensure_promtool`")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<String> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(REFERENCE_METRIC))
        .map(str::to_owned)
        .collect();
    assert!(
        out.status.success() || !said.is_empty(),
        "promtool failed without a word"
    );
    problems
}

/// The value of the sample `series` (`name{label="value",…}`, labels in alphabetical order, as
/// the exposition writes them).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.metrics))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text")
}

/// What a role's `/metrics` must show once everything it was given is done.
struct Expect {
    /// Samples and their values.
    equal: Vec<(String, f64)>,
    /// Samples that must be there, at least this much.
    at_least: Vec<(String, f64)>,
}

/// What each part of the system shows when idle, for the roles that `roles` lists.
fn quiet(roles: &[&str]) -> Expect {
    let mut equal = vec![(
        format!(
            "myevents_build_info{{roles=\"{}\",version=\"{}+{}\"}}",
            roles.join(","),
            env!("CARGO_PKG_VERSION"),
            env!("MYEVENTS_COMMIT")
        ),
        1.0,
    )];
    let mut at_least = vec![(
        "myevents_http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"200\"}"
            .to_owned(),
        1.0,
    )];
    for service in ["events", "bookings", "users"]
        .into_iter()
        .filter(|s| roles.contains(s))
    {
        equal.push((
            format!("myevents_outbox_backlog{{service=\"{service}\"}}"),
            0.0,
        ));
        equal.push((
            format!("myevents_outbox_oldest_age_seconds{{service=\"{service}\"}}"),
            0.0,
        ));
        at_least.push((
            format!("myevents_publish_duration_seconds_count{{service=\"{service}\"}}"),
            1.0,
        ));
        at_least.push((
            format!("myevents_db_pool_connections{{service=\"{service}\",state=\"idle\"}}"),
            1.0,
        ));
        equal.push((
            format!("myevents_db_pool_connections{{service=\"{service}\",state=\"in_use\"}}"),
            0.0,
        ));
    }
    let consumers = [
        ("events", "events", "eventBooked"),
        ("bookings", "booking", "eventCreated"),
        ("notifications", "notifications", "eventBooked"),
    ];
    for (_, group, event) in consumers.into_iter().filter(|(r, _, _)| roles.contains(r)) {
        equal.push((
            format!("myevents_consumer_lag{{consumer=\"{group}\"}}"),
            0.0,
        ));
        equal.push((
            format!("myevents_consumer_oldest_unapplied_age_seconds{{consumer=\"{group}\"}}"),
            0.0,
        ));
        equal.push((
            format!(
                "myevents_messages_dead_lettered_total{{consumer=\"{group}\",type=\"{event}\"}}"
            ),
            0.0,
        ));
    }
    if roles.contains(&"bookings") {
        equal.push(("myevents_bookings_total{outcome=\"booked\"}".into(), 1.0));
        equal.push(("myevents_bookings_total{outcome=\"sold_out\"}".into(), 1.0));
        equal.push(("myevents_bookings_total{outcome=\"invalid\"}".into(), 1.0));
        equal.push(("myevents_bookings_total{outcome=\"error\"}".into(), 0.0));
    }
    if roles.contains(&"notifications") {
        equal.push(("myevents_mail_queue_depth".into(), 0.0));
        equal.push(("myevents_mail_oldest_due_age_seconds".into(), 0.0));
        // The admin's welcome and the booking's confirmation.
        equal.push(("myevents_mails_total{outcome=\"sent\"}".into(), 2.0));
        at_least.push((
            "myevents_db_pool_connections{service=\"notifications\",state=\"idle\"}".into(),
            1.0,
        ));
    }
    Expect { equal, at_least }
}

/// Whether `text` shows what `expect` asks; otherwise what differs.
fn differences(text: &str, expect: &Expect) -> Vec<String> {
    let mut wrong = Vec::new();
    for (series, wanted) in &expect.equal {
        match value(text, series) {
            Some(v) if v == *wanted => {}
            found => wrong.push(format!("{series}: {found:?}, expected {wanted}")),
        }
    }
    for (series, least) in &expect.at_least {
        match value(text, series) {
            Some(v) if v >= *least => {}
            found => wrong.push(format!("{series}: {found:?}, expected at least {least}")),
        }
    }
    wrong
}

/// Waits (up to 30 s: the mail queue is measured every 5 s) until `server`'s metrics show
/// `expect`, then runs promtool on them.
async fn check_role(name: &str, server: &TestServer, expect: &Expect) {
    let started = Instant::now();
    let text = loop {
        let text = scrape(server).await;
        let wrong = differences(&text, expect);
        if wrong.is_empty() {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the {name} process's metrics: {wrong:#?}\n---\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let problems = promtool_problems(&text);
    assert!(
        problems.is_empty(),
        "promtool check metrics on the {name} process:\n{}\n---\n{text}",
        problems.join("\n")
    );
}

/// A sale's first steps: an event, a booking, one refused for want of seats, one invalid.
async fn book_once(front: &TestServer, events: &TestServer, bookings: &TestServer) {
    let admin = front.admin_token().await;
    let location = events.create_location(&admin, 2).await;
    let r = events
        .post("/events", Some(&admin),
              json!({"Name": "Gig", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await["ID"].as_str().unwrap().to_owned();
    bookings.wait_bookable(&event).await;
    let path = format!("/events/{event}/bookings");
    assert_eq!(
        bookings.book(&event, 2, "ann@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        bookings.book(&event, 1, "bob@example.com").await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        bookings
            .post(&path, None, json!({"seats": 0}))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_exposes_clean_metrics_an_operator_can_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    // One after the other: the first creates the token secret the others read.
    for role in ["users", "events", "bookings", "notifications", "web"] {
        let server = TestServer::start_in(dir.path(), &[("MYEVENTS_ROLES", role)]).await;
        servers.push((role, server));
    }
    let find = |role: &str| &servers.iter().find(|(r, _)| *r == role).unwrap().1;
    book_once(find("users"), find("events"), find("bookings")).await;
    for (role, server) in &servers {
        check_role(role, server, &quiet(&[role])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_in_one_process_exposes_clean_metrics_of_every_service() {
    let s = TestServer::start().await;
    book_once(&s, &s, &s).await;
    // The roles a process serves unless told otherwise.
    let every = ["events", "bookings", "users", "notifications"];
    check_role("all-in-one", &s, &quiet(&every)).await;
}

/// On PostgreSQL each service's pool also says how many connections it may open (SQLite's
/// readers have no such limit).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_each_pool_says_how_many_connections_it_may_open() {
    let db = postgres::testing::TestDatabase::create()
        .await
        .expect("a PostgreSQL server");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", db.url.as_str())]).await;
    book_once(&s, &s, &s).await;
    let mut expect = quiet(&["events", "bookings", "users", "notifications"]);
    for (service, max) in [
        ("events", 8.0),
        ("bookings", 16.0),
        ("users", 4.0),
        ("notifications", 4.0),
    ] {
        expect.equal.push((
            format!("myevents_db_pool_max_connections{{service=\"{service}\"}}"),
            max,
        ));
    }
    check_role("all-in-one on PostgreSQL", &s, &expect).await;
}
