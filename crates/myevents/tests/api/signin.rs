//! Sign-in protection from the outside: failed sign-ins slow down the address they come from,
//! never the owner at another address. Clients bind loopback addresses of their own
//! (127.0.0.2, 127.0.0.3; the whole of 127/8 is loopback on Linux) so that the server sees
//! several client addresses.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestServer, assert_error};

/// A client whose connections come from `address`.
fn client_at(address: &str) -> Client {
    Client::builder()
        .local_address(address.parse::<IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

async fn sign_in(
    s: &TestServer,
    client: &Client,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(s.url("/auth/login"))
        .json(&json!({"Email": email, "Password": password}))
        .send()
        .await
        .expect("POST /auth/login")
}

/// Fails to sign in (as `email(i)` for the i-th attempt) until the server makes this client
/// wait at least `secs`, waiting out the shorter waits on the way (they double). A wait of a
/// few seconds leaves the following checks time to run on a loaded machine.
async fn fail_until_waiting(
    s: &TestServer,
    client: &Client,
    email: impl Fn(usize) -> String,
    secs: u64,
) -> Value {
    for i in 0..40 {
        let r = sign_in(s, client, &email(i), "wrong password").await;
        if r.status() == StatusCode::UNAUTHORIZED {
            continue;
        }
        let wait: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a 429 says how long to wait in Retry-After");
        let error = assert_error(r, StatusCode::TOO_MANY_REQUESTS).await;
        if wait >= secs {
            return error;
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    panic!("40 failed sign-ins and no wait of {secs} s");
}

#[tokio::test]
async fn a_strangers_failures_do_not_lock_the_owner_out() {
    let s = TestServer::start().await;
    let stranger = client_at("127.0.0.2");
    let error = fail_until_waiting(&s, &stranger, |_| ADMIN_EMAIL.into(), 4).await;
    assert!(
        error["error"].as_str().unwrap().contains("try again"),
        "{error}"
    );
    // At the stranger's address even the right password waits: that is what stops guessing.
    assert_error(
        sign_in(&s, &stranger, ADMIN_EMAIL, ADMIN_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    // The owner, at another address, signs in at once.
    let owner = client_at("127.0.0.1");
    let r = sign_in(&s, &owner, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    // And a wrong password of theirs is a plain 401, not a 429.
    assert_error(
        sign_in(&s, &owner, ADMIN_EMAIL, "owner mistyped").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_slowed_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &[("MYEVENTS_MAX_FAILED_LOGINS_PER_ADDRESS", "4")],
    )
    .await;
    s.customer("ann@example.com").await;
    let sprayer = client_at("127.0.0.3");
    // A new account on every attempt: only the per-address count grows.
    fail_until_waiting(&s, &sprayer, |i| format!("victim{i}@example.com"), 4).await;
    assert_error(
        sign_in(&s, &sprayer, "ann@example.com", "customer-password").await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    let r = sign_in(
        &s,
        &client_at("127.0.0.1"),
        "ann@example.com",
        "customer-password",
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "another address is not slowed down"
    );
}

#[tokio::test]
async fn a_success_clears_the_failures_of_its_address() {
    let s = TestServer::start().await;
    s.customer("ann@example.com").await;
    let ann = client_at("127.0.0.4");
    for _ in 0..4 {
        let r = sign_in(&s, &ann, "ann@example.com", "mistyped").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = sign_in(&s, &ann, "ann@example.com", "customer-password").await;
    assert_eq!(r.status(), StatusCode::OK);
    // Five more failures are free again (the fifth would otherwise make the sixth wait).
    for _ in 0..5 {
        let r = sign_in(&s, &ann, "ann@example.com", "mistyped").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
}
