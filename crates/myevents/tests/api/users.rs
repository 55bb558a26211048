use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, body};

#[tokio::test]
async fn customers_register_sign_in_and_see_themselves() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/users",
            None,
            json!({"Email": "Ann@Example.com", "Password": "long enough", "Name": "Ann"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = body(r).await;
    assert_eq!(
        (user["Email"].as_str(), user["Role"].as_str()),
        (Some("ann@example.com"), Some("customer"))
    );
    assert!(user.get("Password").is_none() && !user.to_string().contains("argon2"));

    let r = s
        .post(
            "/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "long enough"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let login = body(r).await;
    let token = login["Token"].as_str().unwrap();
    assert!(login["ExpiresAt"].as_i64().unwrap() > chrono_now());
    assert_eq!(body(s.get("/users/me", Some(token)).await).await, user);
    assert_error(s.get("/users/me", None).await, StatusCode::UNAUTHORIZED).await;
    assert_error(
        s.get("/users/me", Some("forged")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn bad_registrations_and_sign_ins_are_refused() {
    let s = TestServer::start().await;
    s.customer("ann@example.com").await;
    let dup = json!({"Email": "ANN@example.com", "Password": "long enough", "Name": "Ann"});
    assert_error(s.post("/users", None, dup).await, StatusCode::CONFLICT).await;
    for bad in [
        json!({"Email": "nope", "Password": "long enough", "Name": "X"}),
        json!({"Email": "x@example.com", "Password": "short", "Name": "X"}),
        json!({"Email": "x@example.com", "Password": "long enough"}),
    ] {
        assert_error(
            s.post("/users", None, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // Registration never makes an admin, whatever the body says.
    let r = s.post("/users", None, json!({"Email": "e@example.com", "Password": "long enough", "Name": "E", "Role": "admin"})).await;
    assert_eq!(body(r).await["Role"], "customer");
    let wrong = json!({"Email": "ann@example.com", "Password": "wrong password"});
    assert_error(
        s.post("/auth/login", None, wrong).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let nobody = json!({"Email": "nobody@example.com", "Password": "whatever1"});
    assert_error(
        s.post("/auth/login", None, nobody).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        s.post("/auth/login", None, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn tokens_outlive_a_rotation_of_the_secret_until_the_previous_one_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let old = ("MYEVENTS_JWT_SECRET", "the-secret-before-the-rotation");
    let s = TestServer::start_in(dir.path(), &[old]).await;
    let old_token = s.customer("ann@example.com").await;
    drop(s);

    let rotated = [
        ("MYEVENTS_JWT_SECRET", "the-secret-after-the-rotation"),
        ("MYEVENTS_JWT_PREVIOUS_SECRET", old.1),
    ];
    let s = TestServer::start_in(dir.path(), &rotated).await;
    let me = s.get("/users/me", Some(&old_token)).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "a token of the previous secret"
    );
    let new_token = s.login("ann@example.com", "customer-password").await;
    assert_eq!(
        s.get("/users/me", Some(&new_token)).await.status(),
        StatusCode::OK
    );
    drop(s);

    let s = TestServer::start_in(dir.path(), &rotated[..1]).await;
    assert_error(
        s.get("/users/me", Some(&old_token)).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        s.get("/users/me", Some(&new_token)).await.status(),
        StatusCode::OK
    );
}
