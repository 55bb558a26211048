//! Services on DynamoDB, against the real server `MYEVENTS_TEST_DYNAMODB_URL` names (default:
//! the local moto), each test with tables of its own (a fresh prefix).

use std::process::Command;

use dynamo::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{OwnServer, TestServer, assert_error, binary, body, eventually, free_port};
use crate::invariants::a_sale_in_one_process;

/// Every service in one process on DynamoDB (the embedded log between them): the whole sale,
/// from sign-in to the event's cancellation reaching its bookings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_on_dynamodb_in_one_process() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", db.url.as_str())]).await;
    a_sale_in_one_process(&s).await;
}

/// A service started while its DynamoDB does not answer says why it is not ready and answers
/// 503 with a JSON error; once a server answers on that port it creates its tables and serves,
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_waits_for_its_dynamodb_and_recovers() {
    let port = free_port();
    let url = format!("dynamodb://127.0.0.1:{port}?region=us-east-1&writes=serial");
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
        why.contains(&format!("dynamodb http://127.0.0.1:{port}")),
        "{ready}"
    );
    assert_error(
        s.get("/events", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let sign_up = json!({"Email": "ann@example.com", "Password": "correct horse", "Name": "Ann"});
    assert_error(
        s.post("/users", None, sign_up.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;

    let _moto = OwnServer::spawn(
        Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        "moto_server (scripts/services.sh installs it)",
    );
    let ready = || async { s.get("/health/ready", None).await.status() == StatusCode::OK };
    eventually("ready once DynamoDB answers", ready).await;
    assert_eq!(
        s.post("/users", None, sign_up).await.status(),
        StatusCode::CREATED
    );
    s.login("ann@example.com", "correct horse").await;
    assert_eq!(body(s.get("/locations", None).await).await, json!([]));
}

/// `myevents migrate` creates every service's tables, harmlessly a second time, and fails when
/// DynamoDB does not answer; `myevents replay` refuses DynamoDB and says why.
#[tokio::test]
async fn migrate_creates_the_tables_and_replay_refuses_dynamodb() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let myevents = |args: &[&str], url: &str| {
        let out = Command::new(binary())
            .args(args)
            .env("MYEVENTS_DATA_DIR", dir.path())
            .env("MYEVENTS_STORAGE_URL", url)
            .output()
            .expect("run myevents");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for _ in 0..2 {
        let (ok, text) = myevents(&["migrate"], &db.url);
        assert!(ok, "{text}");
    }
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_STORAGE_URL", db.url.as_str())]).await;
    assert!(s.is_ready().await);
    drop(s);

    let (ok, text) = myevents(&["replay", "--role", "bookings"], &db.url);
    assert!(!ok && text.contains("not supported on DynamoDB"), "{text}");
    let nowhere = format!("dynamodb://127.0.0.1:{}?region=us-east-1", free_port());
    let (ok, text) = myevents(&["migrate"], &nowhere);
    assert!(!ok && text.contains("cannot prepare the"), "{text}");
}
