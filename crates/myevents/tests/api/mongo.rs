//! Services on MongoDB, against the real server `MYEVENTS_TEST_MONGO_URL` names (default: the
//! local SecantusDB), each test in fresh databases.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongo::bson::{Document, doc};
use mongo::mongodb::Client;
use mongo::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, binary, body, eventually, free_port};
use crate::invariants::{Replay, one_process_per_service};

/// Every service in one process on MongoDB: sign-in, a location and an event, bookings until
/// sold out, a cancellation, and an event cancellation reaching its bookings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_in_one_process_on_mongodb() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", db.url.as_str())]).await;

    let ann = s.customer("ann@example.com").await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 3).await;
    let bookings = format!("/events/{event}/bookings");

    let first = s.post(&bookings, Some(&ann), json!({"seats": 2})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body(first).await;
    let sold_out = assert_error(
        s.post(&bookings, Some(&ann), json!({"seats": 2})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(sold_out["Available"], 1, "{sold_out}");

    let id = first["ID"].as_str().expect("booking ID");
    let cancelled = s.delete(&format!("/bookings/{id}"), Some(&ann)).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(body(cancelled).await["Status"], "cancelled");
    assert_eq!(s.available(&event).await, 3, "the seats came back");

    let guest = s.book(&event, 3, "guest@example.com").await;
    assert_eq!(guest.status(), StatusCode::CREATED);
    let guest = body(guest).await["ID"].as_str().expect("ID").to_owned();
    let gone = s.delete(&format!("/events/{event}"), Some(&admin)).await;
    assert_eq!(gone.status(), StatusCode::OK);
    eventually("the event's booking is cancelled with it", || async {
        let booking = body(s.get(&format!("/bookings/{guest}"), Some(&admin)).await).await;
        booking["Status"] == "event_cancelled"
    })
    .await;
    assert_error(
        s.book(&event, 1, "late@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;

    // The state really is in MongoDB, a database per service.
    let client = Client::with_uri_str(&db.url).await.unwrap();
    let mut names = client.list_database_names().await.unwrap();
    names.retain(|n| n.starts_with(db.name()));
    names.sort();
    let services: Vec<&str> = names.iter().filter_map(|n| n.rsplit('_').next()).collect();
    assert_eq!(services, ["bookings", "events", "notifications", "users"]);
    let events_db = names.iter().find(|n| n.ends_with("_events")).unwrap();
    let stored = client
        .database(events_db)
        .collection::<Document>("events")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

/// A SecantusDB server of this test's own, stopped when dropped.
struct OwnServer(Child);

impl OwnServer {
    /// Starts one on `port` (the program `MYEVENTS_TEST_SECANTUS` names, default
    /// `secantusd-py`) and waits until it accepts connections.
    async fn start(port: u16) -> OwnServer {
        let program =
            std::env::var("MYEVENTS_TEST_SECANTUS").unwrap_or_else(|_| "secantusd-py".into());
        let child = Command::new(&program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let server = OwnServer(child);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{program} did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Services started while their database is down start anyway, say why they are not ready,
/// answer 503 with a JSON error, and serve once a server comes up on that port — no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_started_without_their_database_recover_when_it_comes() {
    let port = free_port();
    let url = format!("mongodb://127.0.0.1:{port}/myevents_down");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MYEVENTS_ROLES", "events,users"),
        ("MYEVENTS_STORAGE_URL", url.as_str()),
    ];
    let s = TestServer::spawn_in(dir.path(), &env);
    s.wait_live().await;
    let ready = assert_error(
        s.get("/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let why = ready["error"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("MongoDB 127.0.0.1:{port}/myevents_down_")),
        "{ready}"
    );
    assert_eq!(
        ready["reasons"].as_array().map(Vec::len),
        Some(2),
        "{ready}"
    );
    assert_error(
        s.get("/events", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    let _server = OwnServer::start(port).await;
    let is_ready = || async { s.get("/health/ready", None).await.status() == StatusCode::OK };
    eventually("ready once the database answers", is_ready).await;
    let sign_up = json!({"Email": "ann@example.com", "Password": "correct horse", "Name": "Ann"});
    assert_eq!(
        s.post("/users", None, sign_up).await.status(),
        StatusCode::CREATED
    );
    s.login("ann@example.com", "correct horse").await;
    assert_eq!(
        body(s.get("/locations", None).await).await,
        json!([]),
        "the events collections exist"
    );
}

/// Every service in a process of its own on MongoDB over one embedded log: the whole story of
/// `one_process_per_service`, with `myevents replay` refused (MongoDB cannot swap a rebuilt
/// state in atomically) and nothing changed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_service_on_mongodb() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let shared = tempfile::tempdir().unwrap();
    let bus = format!("embedded:{}", shared.path().join("bus.db").display());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &bus),
            ("MYEVENTS_STORAGE_URL", &db.url),
        ],
        Replay::RefusedByStorage("not supported on MongoDB"),
    )
    .await;
}

/// `myevents migrate` creates the collections of every configured service, harmlessly a second
/// time, and fails when the database does not answer; `myevents admin create` writes to MongoDB.
#[tokio::test]
async fn migrate_and_admin_create_work_on_mongodb() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let dir = tempfile::tempdir().unwrap();
    let myevents = |args: &[&str], url: &str| {
        let out = Command::new(binary())
            .args(args)
            .env("MYEVENTS_DATA_DIR", dir.path())
            .env("MYEVENTS_STORAGE_URL", url)
            .output()
            .expect("run myevents");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text)
    };
    for _ in 0..2 {
        let (ok, text) = myevents(&["migrate"], &db.url);
        assert!(ok, "{text}");
    }
    let client = Client::with_uri_str(&db.url).await.unwrap();
    let database = |service: &str| client.database(&format!("{}_{service}", db.name()));
    let mut bookings = database("bookings").list_collection_names().await.unwrap();
    bookings.sort();
    assert_eq!(
        bookings,
        [
            "bookings",
            "counters",
            "idempotency",
            "inbox",
            "inventory",
            "outbox"
        ]
    );

    let admin = ["admin", "create", "--email", "boss@example.com"];
    let (ok, text) = myevents(
        &[&admin[..], &["--password", "boss-password"]].concat(),
        &db.url,
    );
    assert!(ok, "{text}");
    let boss = database("users")
        .collection::<Document>("users")
        .find_one(doc! {"email": "boss@example.com"})
        .await
        .unwrap()
        .expect("the admin's account");
    assert_eq!(boss.get_str("role"), Ok("admin"));

    let nowhere = format!("mongodb://127.0.0.1:{}/myevents", free_port());
    let (ok, text) = myevents(&["migrate"], &nowhere);
    assert!(!ok && text.contains("cannot prepare the"), "{text}");
}
