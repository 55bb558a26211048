//! Services on PostgreSQL, against the real server `MYEVENTS_TEST_POSTGRES_URL` names (default:
//! the local one), each test in a fresh database.

use std::process::Command;
use std::time::Duration;

use postgres::sqlx::postgres::PgConnectOptions;
use postgres::sqlx::{self, ConnectOptions, Connection, PgConnection};
use postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, binary, body, eventually, free_port};
use crate::invariants::{Replay, one_process_per_service};

/// Runs the story of `one_process_per_service` over an embedded log, with the storage variable
/// `storage` naming a fresh PostgreSQL database; the database, and a connection to look inside.
async fn the_story_with(storage: &str) -> (TestDatabase, PgConnection) {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let shared = tempfile::tempdir().unwrap();
    let bus = format!("embedded:{}", shared.path().join("bus.db").display());
    one_process_per_service(
        &[("MYEVENTS_BROKER_URL", &bus), (storage, &db.url)],
        Replay::Rebuilds,
    )
    .await;
    let conn = PgConnection::connect(&db.url).await.unwrap();
    (db, conn)
}

/// The events service on PostgreSQL, bookings and users on SQLite, each in a process of its
/// own over one embedded log: the whole story of `one_process_per_service` still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_different_databases_work_together() {
    let (_db, mut conn) = the_story_with("MYEVENTS_EVENTS_STORAGE_URL").await;
    // The events service really kept its state in PostgreSQL, in its own schema.
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
    let s = TestServer::spawn_in(dir.path(), &env).await;
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
    let down = s.get("/events", None).await;
    assert_eq!(
        down.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..]),
        "503 says when to try again"
    );
    let down = assert_error(down, StatusCode::SERVICE_UNAVAILABLE).await;
    let text = down.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused") && !text.contains("postgres"),
        "no database text for the client: {down}"
    );
    let sign_up = json!({"Email": "ann@example.com", "Password": "correct horse", "Name": "Ann"});
    assert_error(
        s.post("/users", None, sign_up).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
}

/// Every service in one PostgreSQL database (a schema each), one process per service: the whole
/// story, including `myevents replay` rebuilding the bookings schema from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_in_one_postgres_database() {
    let (_db, mut conn) = the_story_with("MYEVENTS_STORAGE_URL").await;
    let mut schemas: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_schema::text FROM information_schema.tables WHERE table_name = 'outbox'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    schemas.sort();
    // The replay put a new bookings schema in place and kept the old one.
    assert_eq!(schemas.len(), 4, "{schemas:?}");
    assert_eq!(
        [&schemas[0], &schemas[2], &schemas[3]],
        ["bookings", "events", "users"],
        "{schemas:?}"
    );
    assert!(
        schemas[1].starts_with("bookings_before_replay_"),
        "{schemas:?}"
    );
    conn.close().await.unwrap();
}

/// `myevents migrate` creates the tables of every configured service, harmlessly a second time,
/// and fails when the database does not answer; `myevents admin create` writes to PostgreSQL.
#[tokio::test]
async fn migrate_and_admin_create_work_on_postgres() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
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
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ('events', 'bookings', 'users')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // events: locations, events, sales, outbox, inbox; bookings: inventory, bookings,
    // idempotency, locations, waiting_events, holdings, outbox, inbox; users: users,
    // signin_failures, outbox; and each schema's record of its migrations.
    assert_eq!(tables, 19);

    let admin = [
        "admin",
        "create",
        "--email",
        "boss@example.com",
        "--password",
        "boss-password",
    ];
    let (ok, text) = myevents(&admin, &db.url);
    assert!(ok, "{text}");
    let role: String = sqlx::query_scalar("SELECT role FROM users.users WHERE email = $1")
        .bind("boss@example.com")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(role, "admin");
    conn.close().await.unwrap();

    let nowhere = format!("postgres://postgres@127.0.0.1:{}/myevents", free_port());
    let (ok, text) = myevents(&["migrate"], &nowhere);
    assert!(!ok && text.contains("cannot prepare the"), "{text}");
}

/// A TCP relay to the PostgreSQL server that a test can cut and restore, as if the database went
/// away and came back.
struct Relay {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    fn new(target: String) -> Relay {
        Relay {
            port: free_port(),
            target,
            task: None,
        }
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("relay port");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when the task is aborted) closes every relayed connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The database goes away while a service runs and comes back: the service answers 503 meanwhile
/// and serves again afterwards without a restart; started while it was away, it creates its
/// tables once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_recovers_when_its_database_comes_back() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let direct: PgConnectOptions = db.url.parse().unwrap();
    let mut relay = Relay::new(format!("{}:{}", direct.get_host(), direct.get_port()));
    let via_relay = direct
        .host("127.0.0.1")
        .port(relay.port)
        .to_url_lossy()
        .to_string();

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MYEVENTS_ROLES", "events,users"),
        ("MYEVENTS_STORAGE_URL", via_relay.as_str()),
    ];
    let s = TestServer::spawn_in(dir.path(), &env).await;
    s.wait_live().await;
    assert_error(
        s.get("/events", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    relay.up().await;
    let ready = || async { s.get("/health/ready", None).await.status() == StatusCode::OK };
    eventually("ready once the database answers", ready).await;
    // Tables are created on first use once the database answers.
    let sign_up = json!({"Email": "ann@example.com", "Password": "correct horse", "Name": "Ann"});
    assert_eq!(
        s.post("/users", None, sign_up).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        body(s.get("/locations", None).await).await,
        json!([]),
        "the events tables exist"
    );

    relay.down().await;
    assert_error(
        s.get("/locations", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    relay.up().await;
    eventually("ready again", ready).await;
    s.login("ann@example.com", "correct horse").await;
    let locations = s.get("/locations", None).await;
    assert_eq!(locations.status(), StatusCode::OK);
}

/// A bookings service does not start on a PostgreSQL schema that a replay is rebuilding (here the
/// test holds the replay's lock), and starts once the lock is free.
#[tokio::test]
async fn a_bookings_service_does_not_start_during_a_replay() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let replay = postgres::replay_lock::lock_for_replay(&db.url, "bookings")
        .await
        .expect("the replay lock of a fresh database");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MYEVENTS_ROLES", "bookings"),
        ("MYEVENTS_STORAGE_URL", db.url.as_str()),
    ];
    let mut refused = TestServer::spawn_in(dir.path(), &env).await;
    let exit = refused.exit_within(Duration::from_secs(30)).await;
    assert!(exit.is_some_and(|e| !e.success()), "{exit:?}");
    assert!(
        refused
            .log()
            .contains("a replay is rebuilding schema bookings"),
        "{}",
        refused.log()
    );
    replay.close().await.unwrap();
    let mut serving = TestServer::spawn_in(dir.path(), &env).await;
    serving.wait_live().await;
    assert!(serving.stop().success());
}

/// On PostgreSQL as on SQLite: a corrupt role is a 500, a unique constraint added by hand is a
/// 409, a CHECK constraint the code cannot know of is a 500 — each without the database's
/// words, which are in the log under the request ID.
#[tokio::test]
async fn corrupt_rows_and_constraint_violations_show_no_database_text() {
    use crate::errors::assert_hidden;
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", &db.url)]).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let sign_up = |email: &str, name: &str| {
        s.post(
            "/users",
            None,
            json!({"Email": email, "Password": "correct horse battery", "Name": name}),
        )
    };
    assert_eq!(
        sign_up("eve@example.com", "Eve").await.status(),
        StatusCode::CREATED
    );
    let token = s.login("eve@example.com", "correct horse battery").await;

    sqlx::query("UPDATE users.users SET role = 'superuser' WHERE email = 'eve@example.com'")
        .execute(&mut conn)
        .await
        .unwrap();
    let me = s.get("/users/me", Some(&token)).await;
    assert_hidden(&s, me, StatusCode::INTERNAL_SERVER_ERROR, "superuser").await;

    sqlx::query("CREATE UNIQUE INDEX users_name ON users.users (name)")
        .execute(&mut conn)
        .await
        .unwrap();
    let twin = sign_up("another.eve@example.com", "Eve").await;
    assert_hidden(&s, twin, StatusCode::CONFLICT, "users_name").await;

    sqlx::query("ALTER TABLE users.users ADD CONSTRAINT no_mallory CHECK (name <> 'Mallory')")
        .execute(&mut conn)
        .await
        .unwrap();
    let mallory = sign_up("mallory@example.com", "Mallory").await;
    assert_hidden(&s, mallory, StatusCode::INTERNAL_SERVER_ERROR, "no_mallory").await;
    conn.close().await.unwrap();
}
