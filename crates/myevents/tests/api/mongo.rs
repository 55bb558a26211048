//! Services on MongoDB, against the real server `MYEVENTS_TEST_MONGO_URL` names (default: the
//! local SecantusDB), each test in fresh databases.

use std::process::Command;

use mongo::bson::{Document, doc};
use mongo::mongodb::Client;
use mongo::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{OwnServer, TestServer, assert_error, binary, body, eventually, free_port};
use crate::invariants::{Replay, a_sale_in_one_process, one_process_per_service};

/// Every service in one process on MongoDB: the whole sale, from sign-in to the event's
/// cancellation reaching its bookings; then a look inside, a database per service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_in_one_process_on_mongodb() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", db.url.as_str())]).await;
    a_sale_in_one_process(&s).await;

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

/// A SecantusDB server of this test's own on `port` (the program `MYEVENTS_TEST_SECANTUS`
/// names, default `secantusd-py`), once it accepts connections.
async fn secantus(port: u16) -> OwnServer {
    let program = std::env::var("MYEVENTS_TEST_SECANTUS").unwrap_or_else(|_| "secantusd-py".into());
    OwnServer::spawn(
        Command::new(&program)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:"]),
        &program,
    )
    .listening_on(port)
    .await
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
    let s = TestServer::spawn_in(dir.path(), &env).await;
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

    let _server = secantus(port).await;
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
            "holdings",
            "idempotency",
            "inbox",
            "inventory",
            "locations",
            "outbox",
            "waiting_events"
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
