//! SPEC §2's invariants under load, kill -9, redelivery and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{TestServer, assert_error, binary, body, eventually, mail_recorded_sent};

/// Counts the bookings a burst's clients have had confirmed, and wakes whoever waits for the
/// `at`-th.
struct Confirmations {
    count: AtomicUsize,
    at: usize,
    reached: Notify,
}

impl Confirmations {
    fn new(at: usize) -> Arc<Confirmations> {
        Arc::new(Confirmations {
            count: AtomicUsize::new(0),
            at,
            reached: Notify::new(),
        })
    }

    fn confirmed(&self) {
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            // Kept as a permit if nobody waits yet.
            self.reached.notify_one();
        }
    }

    /// Waits until `at` bookings are confirmed, for at most a minute (then the caller goes on
    /// regardless, and its check of the count fails).
    async fn wait(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(60), self.reached.notified()).await;
    }
}

/// Sends `signal` to `pid` once `confirmations` reach their mark: mid-sale, with that many
/// bookings confirmed to their clients and the rest of the burst still sending.
fn signal_after(
    confirmations: &Arc<Confirmations>,
    signal: &'static str,
    pid: u32,
) -> tokio::task::JoinHandle<()> {
    let confirmations = confirmations.clone();
    tokio::spawn(async move {
        confirmations.wait().await;
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    })
}

/// What a burst of clients got: the bookings confirmed with 201 (each counted in
/// `confirmations` as its answer is read).
async fn burst(
    s: &TestServer,
    event: &str,
    clients: usize,
    per_client: usize,
    confirmations: &Arc<Confirmations>,
) -> Vec<Value> {
    let url = Arc::new(s.url(&format!("/events/{event}/bookings")));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let client = s.client.clone();
        let url = url.clone();
        let confirmations = confirmations.clone();
        tasks.push(tokio::spawn(async move {
            let mut confirmed = Vec::new();
            for j in 0..per_client {
                let seats = 1 + (i + j) % 4;
                let sent = client
                    .post(url.as_str())
                    .json(&json!({"seats": seats, "email": format!("c{i}@example.com")}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => match r.json::<Value>().await {
                        Ok(b) => {
                            confirmed.push(b);
                            confirmations.confirmed();
                        }
                        Err(_) => break, // the server died while answering
                    },
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
            confirmed
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}

/// Seats of the active bookings of `event`, as an admin sees them.
async fn active_seats(s: &TestServer, admin: &str, event: &str) -> i64 {
    let list = body(
        s.get(&format!("/bookings?event={event}"), Some(admin))
            .await,
    )
    .await;
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|b| b["Status"] == "active")
        .map(|b| b["Seats"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_clients_never_oversell() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 100).await;
    let url = Arc::new(s.url(&format!("/events/{event}/bookings")));
    let mut clients = Vec::new();
    for i in 0..200usize {
        let client = s.client.clone();
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            // A refused client that sees seats left asks again for what is left, so the sale
            // must end at exactly the capacity.
            let mut want = 1 + (i % 4) as i64;
            let mut refusals = 0;
            loop {
                let r = client
                    .post(url.as_str())
                    .json(&json!({"seats": want, "email": format!("c{i}@example.com")}))
                    .send()
                    .await
                    .expect("the server answers");
                match r.status() {
                    StatusCode::CREATED => return (want, refusals),
                    StatusCode::CONFLICT => {
                        refusals += 1;
                        let available = r.json::<Value>().await.unwrap()["Available"]
                            .as_i64()
                            .unwrap();
                        if available == 0 {
                            return (0, refusals);
                        }
                        want = want.min(available);
                    }
                    // Too busy for this one just now: a client comes back when told to.
                    StatusCode::SERVICE_UNAVAILABLE => {
                        let secs = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .expect("a 503 says when to come back");
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    let mut confirmed = 0;
    let mut sold_out = 0;
    for c in clients {
        let (seats, _) = c.await.unwrap();
        confirmed += seats;
        if seats == 0 {
            sold_out += 1;
        }
    }
    assert_eq!(
        confirmed, 100,
        "confirmed seats add up to exactly the capacity"
    );
    assert!(sold_out > 0, "the rest got 409");
    assert_eq!(s.available(&event).await, 0);
    assert_eq!(active_seats(&s, &admin, &event).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_mid_burst_loses_no_confirmed_booking() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path(), &[]).await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 100_000).await;

    // Killed once this many bookings are confirmed: the 32 clients keep sending, so the kill
    // lands mid-sale, with requests in flight and a batch being written.
    const KILL_AFTER: usize = 300;
    let confirmations = Confirmations::new(KILL_AFTER);
    let killer = signal_after(&confirmations, "-9", s.pid());
    let confirmed = burst(&s, &event, 32, 10_000, &confirmations).await;
    killer.await.unwrap();
    s.kill();
    assert!(
        confirmed.len() >= KILL_AFTER,
        "{KILL_AFTER} bookings confirmed before the kill, got {}",
        confirmed.len()
    );

    let s = TestServer::start_in(dir.path(), &[]).await;
    let admin = s.admin_token().await;
    for booking in &confirmed {
        let id = booking["ID"].as_str().unwrap();
        let r = s.get(&format!("/bookings/{id}"), Some(&admin)).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "confirmed booking {id} survived"
        );
        assert_eq!(body(r).await["Seats"], booking["Seats"]);
    }
    let available = s.available(&event).await;
    assert_eq!(
        available + active_seats(&s, &admin, &event).await,
        100_000,
        "capacity = available + active seats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_burst_finishes_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path(), &[]).await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 100_000).await;
    const STOP_AFTER: usize = 300;
    let confirmations = Confirmations::new(STOP_AFTER);
    let stopper = signal_after(&confirmations, "-TERM", s.pid());
    let confirmed = burst(&s, &event, 16, 10_000, &confirmations).await;
    stopper.await.unwrap();
    let status = s.wait_exit();
    assert!(status.success(), "graceful exit, got {status:?}");
    assert!(
        confirmed.len() >= STOP_AFTER,
        "{STOP_AFTER} bookings confirmed before SIGTERM, got {}",
        confirmed.len()
    );

    let s = TestServer::start_in(dir.path(), &[]).await;
    let admin = s.admin_token().await;
    let list = body(
        s.get(&format!("/bookings?event={event}"), Some(&admin))
            .await,
    )
    .await;
    let stored: std::collections::HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ID"].as_str().unwrap())
        .collect();
    for booking in &confirmed {
        assert!(stored.contains(booking["ID"].as_str().unwrap()));
    }
    let available = s.available(&event).await;
    assert_eq!(available + active_seats(&s, &admin, &event).await, 100_000);
    // Every booking's event reached the sales figures: nothing committed stayed unpublished.
    let sales_path = format!("/events/{event}/sales");
    let total = list.as_array().unwrap().len() as i64;
    eventually("sales count every booking", || async {
        body(s.get(&sales_path, Some(&admin)).await).await["Bookings"] == total
    })
    .await;
}

/// Availability of `events`, every booking and every sales figure.
async fn snapshot(s: &TestServer, admin: &str, events: &[&str]) -> Value {
    let mut availability = Vec::new();
    for event in events {
        availability.push(body(s.get(&format!("/events/{event}/availability"), None).await).await);
    }
    json!({
        "availability": availability,
        "bookings": body(s.get("/bookings", Some(admin)).await).await,
        "sales": body(s.get("/sales", Some(admin)).await).await,
    })
}

/// Runs the whole life of a booking, then makes every consumer read the log again from the
/// start: the same `eventCreated`, `eventCancelled`, `eventBooked` and `bookingCancelled`
/// delivered twice must leave the state of once.
#[tokio::test]
async fn redelivering_every_event_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path(), &[]).await;
    let admin = s.admin_token().await;
    let kept = s.bookable_event(&admin, 10).await;
    let cancelled = s.bookable_event(&admin, 10).await;
    let a = body(s.book(&kept, 3, "a@example.com").await).await;
    s.book(&kept, 2, "b@example.com").await;
    s.book(&cancelled, 4, "c@example.com").await;
    s.delete(
        &format!(
            "/bookings/{}?token={}",
            a["ID"].as_str().unwrap(),
            a["Token"].as_str().unwrap()
        ),
        None,
    )
    .await;
    s.delete(&format!("/events/{cancelled}"), Some(&admin))
        .await;

    let sales_path = format!("/events/{cancelled}/sales");
    eventually("everything was applied", || async {
        body(s.get(&sales_path, Some(&admin)).await).await["Cancellations"] == 1
    })
    .await;
    let before = snapshot(&s, &admin, &[&kept, &cancelled]).await;
    assert_eq!(before["availability"][0]["Available"], 8);
    let mail_dir = dir.path().join("mail");
    let mails = || {
        let mut names: Vec<String> = std::fs::read_dir(&mail_dir)
            .map(|d| {
                d.filter_map(|f| f.ok())
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    // Three bookings, one cancelled by its customer, one with its event: five mails.
    eventually("a mail for every booking fact", || async {
        mails().iter().filter(|m| m.starts_with("booked-")).count() == 3
            && mails()
                .iter()
                .filter(|m| m.starts_with("cancelled-"))
                .count()
                == 2
    })
    .await;
    let mails_before = mails();
    // A clean stop writes down how far each consumer has read.
    assert!(s.stop().success());

    // Rewind every consumer to the start of the log.
    let bus = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    let rewound = bus.execute("UPDATE offsets SET seq = 0", []).unwrap();
    assert_eq!(rewound, 3, "every consumer group rewound");
    drop(bus);

    let s = TestServer::start_in(dir.path(), &[]).await;
    let metrics_url = format!("{}/metrics", s.metrics);
    eventually("every event was delivered again", || async {
        let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        text.contains("myevents_events_applied_total{consumer=\"booking\",outcome=\"duplicate\",type=\"eventCancelled\"} 1")
            && text.contains("myevents_events_applied_total{consumer=\"events\",outcome=\"duplicate\",type=\"bookingCancelled\"} 2")
    })
    .await;
    let metrics_url = format!("{}/metrics", s.metrics);
    eventually("the notifications service saw every event again", || async {
        let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        text.contains("myevents_events_applied_total{consumer=\"notifications\",outcome=\"duplicate\",type=\"bookingCancelled\"} 2")
    })
    .await;
    let after = snapshot(&s, &admin, &[&kept, &cancelled]).await;
    assert_eq!(after, before);
    // A marker behind every redelivered event: a new customer, whose welcome mail is queued
    // after any mail a redelivery could have queued, and sent after it (and after any old mail
    // sent again).
    let marker = s.customer("marker@example.com").await;
    let marker_id = body(s.get("/users/me", Some(&marker)).await).await["ID"]
        .as_str()
        .expect("the marker's ID")
        .to_owned();
    eventually("the marker's mail was sent", || async {
        mail_recorded_sent(dir.path(), "marker@example.com")
    })
    .await;
    let mut with_marker = mails_before.clone();
    with_marker.push(format!("welcome-{marker_id}.eml"));
    with_marker.sort();
    assert_eq!(mails(), with_marker);
    // The file transport would not write a mail twice; the count of mails sent shows whether
    // any was sent again.
    assert_eq!(
        s.metric("myevents_mails_total{outcome=\"sent\"}").await,
        1.0,
        "only the marker's mail was sent after the restart"
    );
}

/// A sale from start to cancellation on one server, whatever stores it: sign-in, an event of 5
/// seats listed, bookings until sold out (the 409 says none is left), a customer's
/// cancellation giving its seats back exactly once, and the event's cancellation reaching its
/// remaining booking and refusing new ones.
pub(crate) async fn a_sale_in_one_process(s: &TestServer) {
    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let me = body(s.get("/users/me", Some(&ann)).await).await;
    assert_eq!(me["Email"], "ann@example.com");

    let event = s.bookable_event(&admin, 5).await;
    let listed = body(s.get("/events", None).await).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let booking_path = format!("/events/{event}/bookings");
    let booked = s.post(&booking_path, Some(&ann), json!({"seats": 3})).await;
    assert_eq!(booked.status(), StatusCode::CREATED);
    let booking = body(booked).await;
    assert_eq!(s.available(&event).await, 2);
    assert_eq!(
        s.book(&event, 2, "guest@example.com").await.status(),
        StatusCode::CREATED
    );
    let sold_out = assert_error(
        s.book(&event, 1, "late@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(sold_out["Available"], 0);

    let mine = format!("/bookings/{}", booking["ID"].as_str().unwrap());
    let cancelled = s.delete(&mine, Some(&ann)).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(body(cancelled).await["Status"], "cancelled");
    assert_eq!(s.available(&event).await, 3, "seats returned once");
    let again = s.delete(&mine, Some(&ann)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(s.available(&event).await, 3, "and only once");

    let theirs = s.book(&event, 1, "bob@example.com").await;
    assert_eq!(theirs.status(), StatusCode::CREATED);
    let theirs = format!("/bookings/{}", body(theirs).await["ID"].as_str().unwrap());
    let gone = s.delete(&format!("/events/{event}"), Some(&admin)).await;
    assert_eq!(gone.status(), StatusCode::OK);
    assert_eq!(body(gone).await["Status"], "cancelled");
    eventually("the booking is event_cancelled", || async {
        body(s.get(&theirs, Some(&admin)).await).await["Status"] == "event_cancelled"
    })
    .await;
    assert_error(
        s.book(&event, 1, "later@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body(s.get(&mine, Some(&ann)).await).await["Status"],
        "cancelled"
    );
}

/// Whether `myevents replay` can rebuild from the broker: it needs one that keeps history.
#[derive(PartialEq)]
pub(crate) enum Replay {
    Rebuilds,
    Refused,
    /// The bookings storage cannot take a rebuilt state: refused, saying this.
    RefusedByStorage(&'static str),
}

/// Every booking and the availability of `events`, as the bookings service answers them.
async fn bookings_state(s: &TestServer, admin: &str, events: &[&str]) -> Value {
    let mut availability = Vec::new();
    for event in events {
        availability.push(body(s.get(&format!("/events/{event}/availability"), None).await).await);
    }
    json!({"bookings": body(s.get("/bookings", Some(admin)).await).await, "availability": availability})
}

/// Runs `myevents replay --role bookings` on `data_dir` with `env`; its output and success.
fn replay_bookings(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (String, bool) {
    let mut command = std::process::Command::new(binary());
    command
        .args(["replay", "--role", "bookings"])
        .env("MYEVENTS_DATA_DIR", data_dir);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run myevents replay");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

/// Events, bookings, users and notifications each in a process of its own, each with its own
/// data folder, connected only by `broker` (and any other variables given there, such as a
/// storage URL): admin sign-in → location → event → booking → sold
/// out → customer cancel → event cancel cascading to every booking, each fact mailed once. Then
/// the bookings service is stopped and rebuilt from the broker's history with `myevents replay`,
/// and must answer exactly as before (or, on a broker without history, the replay is refused and
/// nothing changes).
pub(crate) async fn one_process_per_service(broker: &[(&str, &str)], replay: Replay) {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let secret = ("MYEVENTS_JWT_SECRET", "one-secret-for-every-service");
    let start = |dir: &tempfile::TempDir, role: &'static str| {
        let mut env = vec![("MYEVENTS_ROLES", role), secret];
        env.extend_from_slice(broker);
        let path = dir.path().to_owned();
        async move { TestServer::start_in(&path, &env).await }
    };
    let users = start(&dirs[0], "users").await;
    let events = start(&dirs[1], "events").await;
    let mut bookings = start(&dirs[2], "bookings").await;
    let notifications = start(&dirs[3], "notifications").await;

    let admin = users.admin_token().await;
    let ann = users.customer("ann@example.com").await;
    let location = events.create_location(&admin, 3).await;
    let r = events
        .post("/events", Some(&admin),
              json!({"Name": "Split", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    let event = body(r).await["ID"].as_str().unwrap().to_owned();
    bookings.wait_bookable(&event).await;

    let path = format!("/events/{event}/bookings");
    let mine = bookings.post(&path, Some(&ann), json!({"seats": 1})).await;
    assert_eq!(mine.status(), StatusCode::CREATED);
    let mine = body(mine).await;
    assert_eq!(
        bookings.book(&event, 2, "g@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        bookings.book(&event, 1, "h@example.com").await.status(),
        StatusCode::CONFLICT,
        "sold out"
    );

    let mine_path = format!("/bookings/{}", mine["ID"].as_str().unwrap());
    let cancelled = bookings.delete(&mine_path, Some(&ann)).await;
    assert_eq!(body(cancelled).await["Status"], "cancelled");
    assert_eq!(bookings.available(&event).await, 1);

    assert_eq!(
        events
            .delete(&format!("/events/{event}"), Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    eventually(
        "every booking of the cancelled event is event_cancelled",
        || async {
            let list = body(
                bookings
                    .get(&format!("/bookings?event={event}"), Some(&admin))
                    .await,
            )
            .await;
            let mut statuses: Vec<&str> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["Status"].as_str().unwrap())
                .collect();
            statuses.sort_unstable();
            // Ann's, which she cancelled, and the guest's, which went with the event.
            statuses == ["cancelled", "event_cancelled"]
        },
    )
    .await;
    let sales = format!("/events/{event}/sales");
    eventually(
        "the events service saw every booking and cancellation",
        || async {
            body(events.get(&sales, Some(&admin)).await).await
                == json!({"EventID": event, "SeatsSold": 0, "Bookings": 2, "Cancellations": 2})
        },
    )
    .await;
    let mail_dir = dirs[3].path().join("mail");
    eventually(
        "the notifications service mailed every fact once",
        || async {
            let mut kinds: Vec<String> = std::fs::read_dir(&mail_dir)
                .map(|d| {
                    d.filter_map(|f| f.ok())
                        .filter_map(|f| {
                            let name = f.file_name().to_string_lossy().into_owned();
                            name.split('-').next().map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default();
            kinds.sort();
            // Two bookings, both cancelled; welcomes for the admin and Ann.
            kinds
                == [
                    "booked",
                    "booked",
                    "cancelled",
                    "cancelled",
                    "welcome",
                    "welcome",
                ]
        },
    )
    .await;
    let sent = reqwest::get(format!("{}/metrics", notifications.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sent.contains("myevents_mails_total{outcome=\"sent\"} 6\n"),
        "six mails sent, none twice:\n{sent}"
    );

    // A second event that stays on sale, so the replay has active bookings to rebuild.
    let r = events
        .post("/events", Some(&admin),
              json!({"Name": "Kept", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    let kept = body(r).await["ID"].as_str().unwrap().to_owned();
    bookings.wait_bookable(&kept).await;
    let kept_path = format!("/events/{kept}/bookings");
    let anns = bookings
        .post(&kept_path, Some(&ann), json!({"seats": 2}))
        .await;
    assert_eq!(anns.status(), StatusCode::CREATED);
    let before = bookings_state(&bookings, &admin, &[&event, &kept]).await;
    assert_eq!(before["availability"][1]["Available"], 1);
    let mut env = vec![("MYEVENTS_ROLES", "bookings"), secret];
    env.extend_from_slice(broker);
    // A served database is locked (SQLite: a lock file; PostgreSQL: an advisory lock); MongoDB
    // and DynamoDB refuse replays altogether, which is checked below.
    if !matches!(replay, Replay::RefusedByStorage(_)) {
        let (output, succeeded) = replay_bookings(dirs[2].path(), &env);
        assert!(
            !succeeded && output.contains("stop it first"),
            "no replay under a running service:\n{output}"
        );
    }
    assert!(bookings.stop().success());

    let (output, succeeded) = replay_bookings(dirs[2].path(), &env);
    match replay {
        Replay::Rebuilds => {
            assert!(succeeded, "replay failed:\n{output}");
            assert!(output.contains("3 bookings (1 active)"), "{output}");
        }
        Replay::Refused => {
            assert!(
                !succeeded,
                "a broker without history cannot replay:\n{output}"
            );
            assert!(output.contains("keeps no history"), "{output}");
        }
        Replay::RefusedByStorage(reason) => {
            assert!(!succeeded && output.contains(reason), "{output}");
        }
    }
    let bookings = start(&dirs[2], "bookings").await;
    let after = bookings_state(&bookings, &admin, &[&event, &kept]).await;
    assert_eq!(after, before, "the replayed service answers as before");
    // And it goes on selling from where it was.
    assert_eq!(
        bookings.book(&kept, 1, "k@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        bookings.book(&kept, 1, "l@example.com").await.status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_service_over_the_embedded_log() {
    let shared = tempfile::tempdir().unwrap();
    let url = format!("embedded:{}", shared.path().join("bus.db").display());
    one_process_per_service(&[("MYEVENTS_BROKER_URL", &url)], Replay::Rebuilds).await;
}

#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_service_over_rabbitmq() {
    let url = crate::helpers::amqp_url();
    let namespace = format!("e2e-{}.", std::process::id());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &url),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
        ],
        Replay::Refused,
    )
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_service_over_kafka() {
    let kafka = crate::helpers::kafka_url();
    let namespace = format!(
        "e2e-{}-{}.",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &kafka),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
        ],
        Replay::Rebuilds,
    )
    .await;
}

#[cfg(feature = "sqs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_service_over_sqs() {
    let url = std::env::var("MYEVENTS_TEST_SQS_URL")
        .unwrap_or_else(|_| "sqs://127.0.0.1:5000".to_owned());
    let namespace = format!("e2e-{}-", uuid::Uuid::now_v7().simple());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &url),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
        ],
        Replay::Refused,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_in_separate_processes_talk_through_the_embedded_log() {
    let dir = tempfile::tempdir().unwrap();
    let front = TestServer::start_in(dir.path(), &[("MYEVENTS_ROLES", "events,users")]).await;
    let back = TestServer::start_in(dir.path(), &[("MYEVENTS_ROLES", "bookings")]).await;
    let admin = front.admin_token().await;
    let location = front.create_location(&admin, 3).await;
    let r = front
        .post("/events", Some(&admin),
              json!({"Name": "Split", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    let event = body(r).await["ID"].as_str().unwrap().to_owned();
    back.wait_bookable(&event).await;
    assert_eq!(
        back.book(&event, 3, "g@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        back.book(&event, 1, "h@example.com").await.status(),
        StatusCode::CONFLICT
    );
    front
        .delete(&format!("/events/{event}"), Some(&admin))
        .await;
    let sales = format!("/events/{event}/sales");
    eventually("the cancellation went round both processes", || async {
        body(front.get(&sales, Some(&admin)).await).await["Cancellations"] == 1
    })
    .await;
    assert!(dir.path().join("events.db").exists() && dir.path().join("bookings.db").exists());
}

/// Services pointed at a broker that is not up yet start, say they are not ready and why, keep
/// what they commit meanwhile, and turn ready and deliver it once the broker answers.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_before_their_broker_deliver_once_it_is_up() {
    let port = crate::helpers::free_port();
    let url = format!("kafka://127.0.0.1:{port}");
    let broker = [
        ("MYEVENTS_BROKER_URL", url.as_str()),
        ("MYEVENTS_JWT_SECRET", "one-secret-for-every-service"),
    ];
    let (front_dir, back_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut front_env = vec![("MYEVENTS_ROLES", "events,users")];
    front_env.extend_from_slice(&broker);
    let mut back_env = vec![("MYEVENTS_ROLES", "bookings")];
    back_env.extend_from_slice(&broker);
    let front = TestServer::start_live_in(front_dir.path(), &front_env).await;
    let back = TestServer::start_live_in(back_dir.path(), &back_env).await;

    let not_ready = crate::helpers::assert_error(
        back.get("/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        not_ready["error"].as_str().unwrap().contains("Kafka"),
        "{not_ready}"
    );
    // Committed while the broker is down: it waits in the outbox.
    let admin = front.admin_token().await;
    let location = front.create_location(&admin, 5).await;
    let r = front
        .post("/events", Some(&admin),
              json!({"Name": "Early", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await["ID"].as_str().unwrap().to_owned();

    let _kafka = crate::helpers::OwnKafka::start(&format!("127.0.0.1:{port}"));
    eventually("both services are ready", || async {
        front.is_ready().await && back.is_ready().await
    })
    .await;
    back.wait_bookable(&event).await;
    assert_eq!(
        back.book(&event, 5, "g@example.com").await.status(),
        StatusCode::CREATED
    );
}
