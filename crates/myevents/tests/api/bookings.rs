use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, body, eventually};

#[tokio::test]
async fn guests_and_users_book_until_sold_out() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let event = s.bookable_event(&admin, 5).await;

    let r = s.book(&event, 2, "guest@example.com").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let guest = body(r).await;
    assert_eq!(
        (guest["Seats"].as_i64(), guest["Status"].as_str()),
        (Some(2), Some("active"))
    );
    assert_eq!(
        (guest["Email"].as_str(), guest["UserID"].as_str()),
        (Some("guest@example.com"), Some(""))
    );
    assert_eq!(guest["EventID"], event.as_str());

    let r = s
        .post(
            &format!("/events/{event}/bookings"),
            Some(&ann),
            json!({"seats": 2}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mine = body(r).await;
    assert_eq!(mine["Email"], "ann@example.com");
    assert!(!mine["UserID"].as_str().unwrap().is_empty());

    let availability = body(s.get(&format!("/events/{event}/availability"), None).await).await;
    assert_eq!(
        availability,
        json!({"EventID": event, "Capacity": 5, "Available": 1, "Status": "active", "MaxSeatsPerBooking": 10})
    );

    let short = assert_error(
        s.book(&event, 2, "late@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(short["Available"], 1);
    assert_eq!(
        s.book(&event, 1, "last@example.com").await.status(),
        StatusCode::CREATED
    );
    let sold = assert_error(
        s.book(&event, 1, "late@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(sold["Available"], 0);
    assert_eq!(s.available(&event).await, 0);
}

#[tokio::test]
async fn invalid_booking_requests_are_refused() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 50).await;
    for seats in [0, -1, 11] {
        assert_error(
            s.book(&event, seats, "g@example.com").await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let path = format!("/events/{event}/bookings");
    assert_error(
        s.post(&path, None, json!({"email": "g@example.com"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_error(
        s.post(&path, None, json!({"seats": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_error(
        s.book(&event, 1, "not-an-email").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_error(
        s.post(&path, None, json!({"seats": "two"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_error(
        s.book("unknown", 1, "g@example.com").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        s.post(&path, Some("garbage"), json!({"seats": 1})).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(s.available(&event).await, 50, "nothing was booked");
    assert_error(
        s.get("/events/unknown/availability", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_cancelled_event_takes_no_bookings_and_cancels_the_ones_it_had() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let booking = body(s.book(&event, 2, "g@example.com").await).await;
    assert_eq!(
        s.delete(&format!("/events/{event}"), Some(&admin))
            .await
            .status(),
        StatusCode::OK
    );
    let path = format!("/bookings/{}", booking["ID"].as_str().unwrap());
    eventually("the booking is event_cancelled", || async {
        body(s.get(&path, None).await).await["Status"] == "event_cancelled"
    })
    .await;
    let refused = assert_error(
        s.book(&event, 1, "g@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(refused["Available"], 0);
    let availability = body(s.get(&format!("/events/{event}/availability"), None).await).await;
    assert_eq!(availability["Status"], "cancelled");
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_book_nothing_more() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let send = |seats: i64| {
        s.client
            .post(s.url(&format!("/events/{event}/bookings")))
            .header("Idempotency-Key", "retry-1")
            .json(&json!({"seats": seats, "email": "g@example.com"}))
            .send()
    };
    let first = send(3).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body(first).await;
    let again = send(3).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(body(again).await, first, "the first answer, again");
    assert_eq!(s.available(&event).await, 7, "booked once");
    assert_error(send(4).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(s.available(&event).await, 7);
}

#[tokio::test]
async fn bookings_are_listed_shown_and_cancelled_by_their_owner_or_an_admin() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let bob = s.customer("bob@example.com").await;
    let event = s.bookable_event(&admin, 10).await;
    let other = s.bookable_event(&admin, 10).await;
    let path = format!("/events/{event}/bookings");
    let mine = body(s.post(&path, Some(&ann), json!({"seats": 3})).await).await;
    s.post(
        &format!("/events/{other}/bookings"),
        Some(&ann),
        json!({"seats": 1}),
    )
    .await;
    s.post(&path, Some(&bob), json!({"seats": 1})).await;
    let guest = body(s.book(&event, 1, "guest@example.com").await).await;

    assert_error(s.get("/bookings", None).await, StatusCode::UNAUTHORIZED).await;
    let anns = body(s.get("/bookings", Some(&ann)).await).await;
    assert_eq!(anns.as_array().unwrap().len(), 2, "Ann sees her own");
    assert_eq!(
        body(s.get("/bookings", Some(&admin)).await)
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let filtered = body(
        s.get(&format!("/bookings?event={event}"), Some(&admin))
            .await,
    )
    .await;
    assert_eq!(filtered.as_array().unwrap().len(), 3);

    let mine_path = format!("/bookings/{}", mine["ID"].as_str().unwrap());
    assert_eq!(body(s.get(&mine_path, Some(&ann)).await).await, mine);
    assert_eq!(
        s.get(&mine_path, Some(&admin)).await.status(),
        StatusCode::OK
    );
    assert_error(s.get(&mine_path, Some(&bob)).await, StatusCode::FORBIDDEN).await;
    assert_error(s.get(&mine_path, None).await, StatusCode::UNAUTHORIZED).await;
    assert_error(
        s.get("/bookings/unknown", Some(&admin)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    assert_error(
        s.delete(&mine_path, Some(&bob)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(s.available(&event).await, 5);
    let cancelled = s.delete(&mine_path, Some(&ann)).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(body(cancelled).await["Status"], "cancelled");
    assert_eq!(s.available(&event).await, 8);
    let twice = s.delete(&mine_path, Some(&admin)).await;
    assert_eq!(body(twice).await["Status"], "cancelled");
    assert_eq!(s.available(&event).await, 8, "seats return exactly once");

    let guest_path = format!("/bookings/{}", guest["ID"].as_str().unwrap());
    assert_eq!(s.get(&guest_path, None).await.status(), StatusCode::OK);
    assert_error(s.delete(&guest_path, None).await, StatusCode::FORBIDDEN).await;
    let r = s
        .delete(&format!("{guest_path}?email=GUEST@example.com"), None)
        .await;
    assert_eq!(body(r).await["Status"], "cancelled");
    assert_error(
        s.delete("/bookings/unknown", Some(&admin)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
