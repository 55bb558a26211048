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
    let path = format!(
        "/bookings/{}?token={}",
        booking["ID"].as_str().unwrap(),
        booking["Token"].as_str().unwrap()
    );
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

    // A guest booking opens with its token only: its id shows no e-mail and cancels nothing,
    // and neither does the same address signed in, or another booking's token.
    let guest_path = format!("/bookings/{}", guest["ID"].as_str().unwrap());
    let token = guest["Token"].as_str().unwrap();
    let mine_token = mine.get("Token");
    assert_eq!(
        mine_token, None,
        "a member's booking has no token: they sign in"
    );
    let refused = assert_error(s.get(&guest_path, None).await, StatusCode::FORBIDDEN).await;
    assert!(
        !refused.to_string().contains("guest@example.com"),
        "{refused}"
    );
    assert_error(s.delete(&guest_path, None).await, StatusCode::FORBIDDEN).await;
    let same_address = s.customer("guest@example.com").await;
    assert_error(
        s.get(&guest_path, Some(&same_address)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let other_guest = body(s.book(&event, 1, "other@example.com").await).await;
    let other_token = other_guest["Token"].as_str().unwrap();
    assert_error(
        s.delete(&format!("{guest_path}?token={other_token}"), None)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        s.delete(&format!("{guest_path}?email=GUEST@example.com"), None)
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let shown = body(s.get(&format!("{guest_path}?token={token}"), None).await).await;
    assert_eq!(
        shown, guest,
        "the token shows the booking as it was answered"
    );
    assert_eq!(
        s.get(&guest_path, Some(&admin)).await.status(),
        StatusCode::OK
    );
    let r = s.delete(&format!("{guest_path}?token={token}"), None).await;
    assert_eq!(body(r).await["Status"], "cancelled");
    assert_error(
        s.delete("/bookings/unknown", Some(&admin)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// Exactly what the reference's React UI sends: `{"seats": n}`, no token, no e-mail, no
/// `Content-Type`. It books, and the answer carries the token and link that manage it.
#[tokio::test]
async fn the_reference_uis_booking_call_books_and_its_token_manages_the_booking() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let response = reqwest::Client::new()
        .post(s.url(&format!("/events/{event}/bookings")))
        .body(r#"{"seats": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let booking = body(response).await;
    assert_eq!(booking["Seats"], 2);
    assert_eq!(booking["Email"], "");
    assert_eq!(booking["UserID"], "");
    let id = booking["ID"].as_str().unwrap();
    let token = booking["Token"].as_str().unwrap();
    assert_eq!(token.len(), 32, "{booking}");
    let link = booking["Link"].as_str().unwrap();
    assert!(
        link.ends_with(&format!("/#/bookings/{id}?token={token}")),
        "{link}"
    );
    assert_eq!(s.available(&event).await, 8);

    let path = format!("/bookings/{id}");
    assert_error(s.delete(&path, None).await, StatusCode::FORBIDDEN).await;
    assert_error(
        s.delete(
            &format!("{path}?token=0123456789abcdef0123456789abcdef"),
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        s.available(&event).await,
        8,
        "nothing cancelled without the token"
    );
    let cancelled = body(s.delete(&format!("{path}?token={token}"), None).await).await;
    assert_eq!(cancelled["Status"], "cancelled");
    assert_eq!(s.available(&event).await, 10);
}

/// An operator may cap guest bookings per client address; signed-in customers are not capped,
/// and the cap is off by default (the other tests book many times as guests).
#[tokio::test]
async fn an_optional_cap_limits_guest_bookings_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_GUEST_BOOKINGS_PER_HOUR", "2")]).await;
    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let event = s.bookable_event(&admin, 10).await;
    let path = format!("/events/{event}/bookings");
    for _ in 0..2 {
        assert_eq!(
            s.post(&path, None, json!({"seats": 1})).await.status(),
            StatusCode::CREATED
        );
    }
    let refused = s.post(&path, None, json!({"seats": 1})).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        s.post(&path, Some(&ann), json!({"seats": 1}))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(s.available(&event).await, 7);
}

/// An organiser's limit of seats per customer, set when the event is created, holds from the
/// events service to the bookings service: a customer (signed in, or a guest by address) gets
/// a 409 saying the limit once they would pass it, a guest with no address is asked for one,
/// and a cancellation gives the customer their seats back.
#[tokio::test]
async fn an_events_limit_of_seats_per_customer_holds() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let location = s.create_location(&admin, 100).await;
    let r = s
        .post(
            "/events",
            Some(&admin),
            json!({"Name": "Limited", "StartDate": 1_900_000_000, "EndDate": 1_900_007_200,
                   "Location": {"ID": location["ID"]}, "Hall": "Main", "SeatsPerCustomer": 4}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await;
    assert_eq!(event["SeatsPerCustomer"], 4);
    let event = event["ID"].as_str().expect("event ID").to_owned();
    s.wait_bookable(&event).await;

    let path = format!("/events/{event}/bookings");
    let r = s.post(&path, Some(&ann), json!({"seats": 3})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let first = body(r).await;
    // Ann signed in is told what she holds.
    let over = assert_error(
        s.post(&path, Some(&ann), json!({"seats": 2})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        (over["SeatsPerCustomer"].as_i64(), over["Held"].as_i64()),
        (Some(4), Some(3))
    );
    // Booking as a guest with her address is still Ann, but a guest, who names an address
    // anyone may type, is not told what it holds.
    let over = assert_error(
        s.book(&event, 2, "ann@example.com").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        (over["SeatsPerCustomer"].as_i64(), over.get("Held")),
        (Some(4), None)
    );
    assert_eq!(over["error"], "at most 4 seats per customer for this event");
    assert_eq!(
        s.book(&event, 4, "bob@example.com").await.status(),
        StatusCode::CREATED
    );
    let anonymous = s.post(&path, None, json!({"seats": 1})).await;
    assert_error(anonymous, StatusCode::UNPROCESSABLE_ENTITY).await;

    let cancel = format!("/bookings/{}", first["ID"].as_str().unwrap());
    let r = s.delete(&cancel, Some(&ann)).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        s.book(&event, 4, "ann@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(s.available(&event).await, 92);

    // The events service refuses a limit above the event's seats.
    let too_many = s
        .post(
            "/events",
            Some(&admin),
            json!({"Name": "Odd", "StartDate": 1_900_000_000, "EndDate": 1_900_007_200,
                   "Location": {"ID": location["ID"]}, "Hall": "Main", "SeatsPerCustomer": 101}),
        )
        .await;
    assert!(too_many.status().is_client_error(), "{}", too_many.status());
}
