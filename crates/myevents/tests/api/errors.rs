//! What a client sees when storage fails: the kind of failure as its status, a text for a
//! person, and the request ID — never the database's own words, which go to the log under that
//! ID. The database is damaged on purpose, from outside, as a bad migration or another program
//! would.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestServer, assert_error};

/// Words of SQLite's, PostgreSQL's and this program's storage errors; none may reach a client.
pub const DATABASE_WORDS: &[&str] = &[
    "sqlite",
    "postgres",
    "constraint",
    "column",
    "conversion",
    "database",
    "storage error",
    "unknown",
    "users_name",
    "superuser",
    "archived",
];

/// Asserts a storage failure as the client sees it, and finds its request ID in the server's
/// log beside the database's words `logged`.
pub async fn assert_hidden(
    s: &TestServer,
    response: Response,
    status: StatusCode,
    logged: &str,
) -> Value {
    let error = assert_error(response, status).await;
    let text = error.to_string().to_lowercase();
    for word in DATABASE_WORDS {
        assert!(!text.contains(word), "{word:?} reached the client: {error}");
    }
    let id = error["RequestID"].as_str().unwrap();
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains(id) && l.contains(logged)),
        "no log line with {id} and {logged:?}:\n{log}"
    );
    error
}

async fn sign_up(s: &TestServer, email: &str, name: &str) -> Response {
    s.post(
        "/users",
        None,
        json!({"Email": email, "Password": "correct horse battery", "Name": name}),
    )
    .await
}

fn sqlite(s: &TestServer, service: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(s.data_dir.join(format!("{service}.db"))).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn
}

/// A role or status that this program never writes is an error (500), not a customer or an
/// active event; the client learns nothing of the value.
#[tokio::test]
async fn a_corrupt_row_in_sqlite_is_a_500_without_database_text() {
    let s = TestServer::start().await;
    assert_eq!(
        sign_up(&s, "eve@example.com", "Eve").await.status(),
        StatusCode::CREATED
    );
    let token = s.login("eve@example.com", "correct horse battery").await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;

    sqlite(&s, "users")
        .execute(
            "UPDATE users SET role = 'superuser' WHERE email = 'eve@example.com'",
            [],
        )
        .unwrap();
    let me = s.get("/users/me", Some(&token)).await;
    assert_hidden(&s, me, StatusCode::INTERNAL_SERVER_ERROR, "superuser").await;

    sqlite(&s, "events")
        .execute(
            "UPDATE events SET status = 'archived' WHERE id = ?1",
            [&event],
        )
        .unwrap();
    let read = s.get(&format!("/events/{event}"), None).await;
    assert_hidden(&s, read, StatusCode::INTERNAL_SERVER_ERROR, "archived").await;

    sqlite(&s, "bookings")
        .execute(
            "UPDATE inventory SET status = 'archived' WHERE event_id = ?1",
            [&event],
        )
        .unwrap();
    let seats = s.get(&format!("/events/{event}/availability"), None).await;
    assert_hidden(&s, seats, StatusCode::INTERNAL_SERVER_ERROR, "archived").await;
}

/// A unique constraint the code does not know of (added by hand) is a 409 for the client, with
/// none of SQLite's text.
#[tokio::test]
async fn a_constraint_violation_in_sqlite_is_a_409_without_database_text() {
    let s = TestServer::start().await;
    sqlite(&s, "users")
        .execute("CREATE UNIQUE INDEX users_name ON users (name)", [])
        .unwrap();
    assert_eq!(
        sign_up(&s, "ann@example.com", "Ann").await.status(),
        StatusCode::CREATED
    );
    let second = sign_up(&s, "another.ann@example.com", "Ann").await;
    assert_hidden(&s, second, StatusCode::CONFLICT, "UNIQUE constraint failed").await;
}
