//! Services on PostgreSQL, against the real server `MYEVENTS_TEST_POSTGRES_URL` names (default:
//! the local one), each test in a fresh database.

use postgres::sqlx::{self, Connection, PgConnection};
use postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, free_port};
use crate::invariants::{Replay, one_process_per_service};

/// The events service on PostgreSQL, bookings and users on SQLite, each in a process of its
/// own over one embedded log: the whole story of `one_process_per_service` still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_different_databases_work_together() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let shared = tempfile::tempdir().unwrap();
    let bus = format!("embedded:{}", shared.path().join("bus.db").display());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &bus),
            ("MYEVENTS_EVENTS_STORAGE_URL", &db.url),
        ],
        Replay::Rebuilds,
    )
    .await;

    // The events service really kept its state in PostgreSQL, in its own schema.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let (events, locations): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events.events), (SELECT COUNT(*) FROM events.locations)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((events, locations), (2, 1));
    conn.close().await.unwrap();
}

/// Services whose database does not answer start anyway, say why they are not ready, and
/// answer 503 with a JSON error to a request that needs storage.
#[tokio::test]
async fn services_start_without_their_database_and_say_why_they_are_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on a port just freed.
    let nowhere = format!("postgres://postgres@127.0.0.1:{}/myevents", free_port());
    // TestServer configures an admin: creating it waits for the database instead of stopping
    // the start.
    let env = [
        ("MYEVENTS_ROLES", "events,users"),
        ("MYEVENTS_STORAGE_URL", nowhere.as_str()),
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
        why.contains("postgres 127.0.0.1") && why.contains("refused"),
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
    let sign_up = json!({"Email": "ann@example.com", "Password": "correct horse", "Name": "Ann"});
    assert_error(
        s.post("/users", None, sign_up).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
}
