use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestServer, assert_error, body};

#[tokio::test]
async fn locations_are_created_and_listed_in_the_reference_shape() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    // The reference's clients post lower-case keys.
    let r = s
        .post("/locations", Some(&admin),
              json!({"name": "Opera", "address": "Quay", "country": "AU", "opentime": 9, "closetime": 23,
                     "halls": [{"name": "Main", "location": "ground", "capacity": 1500}]}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = body(r).await;
    assert_eq!(location["Name"], "Opera");
    assert_eq!(location["OpenTime"], 9);
    assert_eq!(
        location["Halls"][0],
        json!({"name": "Main", "location": "ground", "capacity": 1500})
    );
    let id = location["ID"].as_str().unwrap();

    assert_eq!(
        body(s.get(&format!("/locations/{id}"), None).await).await,
        location
    );
    assert_eq!(
        body(s.get("/locations", None).await).await,
        json!([location])
    );
    assert_error(
        s.get("/locations/unknown", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn events_are_created_found_and_cancelled() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let location = s.create_location(&admin, 100).await;

    // No Content-Type, lower-case keys: the reference UI's way.
    let r = s
        .client
        .post(s.url("/events"))
        .bearer_auth(&admin)
        .body(
            json!({"name": "Tosca", "startdate": 1_900_000_000, "enddate": 1_900_009_000,
                     "location": {"id": location["ID"]}, "hall": "Main", "capacity": 60})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await;
    assert_eq!(event["Name"], "Tosca");
    assert_eq!(event["Duration"], 150);
    assert_eq!(event["Capacity"], 60);
    assert_eq!(event["Hall"], "Main");
    assert_eq!(event["Status"], "active");
    assert_eq!(event["Location"]["Halls"][0]["name"], "Main");
    let id = event["ID"].as_str().unwrap();

    assert_eq!(
        body(s.get(&format!("/events/{id}"), None).await).await,
        event
    );
    assert_eq!(
        body(s.get(&format!("/events/id/{id}"), None).await).await,
        event
    );
    assert_eq!(body(s.get("/events/name/Tosca", None).await).await, event);
    assert_eq!(body(s.get("/events", None).await).await, json!([event]));
    assert_error(s.get("/events/unknown", None).await, StatusCode::NOT_FOUND).await;
    assert_error(
        s.get("/events/id/unknown", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        s.get("/events/name/Nothing", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let r = s.delete(&format!("/events/{id}"), Some(&admin)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await["Status"], "cancelled");
    assert_eq!(
        body(s.get(&format!("/events/{id}"), None).await).await["Status"],
        "cancelled"
    );
    assert_error(
        s.delete("/events/unknown", Some(&admin)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn an_event_may_bring_a_new_location_and_omit_the_only_hall() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let r = s
        .post(
            "/events",
            Some(&admin),
            json!({"Name": "Gig", "StartDate": 1_900_000_000, "EndDate": 1_900_003_600,
                     "Location": {"Name": "Club", "Halls": [{"name": "Floor", "capacity": 200}]}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await;
    assert_eq!(
        (event["Hall"].as_str(), event["Capacity"].as_i64()),
        (Some("Floor"), Some(200))
    );
    let location_id = event["Location"]["ID"].as_str().unwrap();
    assert_eq!(
        s.get(&format!("/locations/{location_id}"), None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn invalid_events_and_locations_get_clear_errors() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let location = s.create_location(&admin, 100).await;
    let good = json!({"Name": "X", "StartDate": 1_900_000_000, "EndDate": 1_900_003_600,
                      "Location": {"ID": location["ID"]}, "Hall": "Main"});
    let with = |key: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let cases = [
        (with("Name", json!("")), "missing name"),
        (with("EndDate", json!(1_800_000_000)), "end before start"),
        (with("Location", json!({"ID": "nope"})), "unknown location"),
        (with("Hall", json!("Nope")), "unknown hall"),
        (with("Capacity", json!(101)), "capacity above the hall's"),
        (with("Capacity", json!(0)), "zero capacity"),
        (with("Location", serde_json::Value::Null), "no location"),
    ];
    for (case, why) in cases {
        let r = s.post("/events", Some(&admin), case).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{why}");
        assert_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let r = s
        .client
        .post(s.url("/events"))
        .bearer_auth(&admin)
        .body("{\"Name\": ")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST).await;
    let r = s
        .post(
            "/events",
            Some(&admin),
            with("StartDate", json!("tomorrow")),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST).await;
    let r = s
        .post("/locations", Some(&admin), json!({"Name": "No halls"}))
        .await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r = s
        .post(
            "/locations",
            Some(&admin),
            json!({"Name": "Bad", "Halls": [{"name": "A", "capacity": -5}]}),
        )
        .await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_error(
        s.get("/events?limit=lots", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn only_admins_create_and_cancel() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let customer = s.customer("ann@example.com").await;
    let event = s.bookable_event(&admin, 10).await;
    let location = json!({"Name": "L", "Halls": [{"name": "A", "capacity": 1}]});
    assert_error(
        s.post("/locations", None, location.clone()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        s.post("/locations", Some(&customer), location).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        s.post("/events", None, json!({})).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        s.post("/events", Some(&customer), json!({})).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        s.delete(&format!("/events/{event}"), None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        s.delete(&format!("/events/{event}"), Some(&customer)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_error(
        s.post("/events", Some("not-a-token"), json!({})).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        s.get("/sales", Some(&customer)).await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn events_page_with_limit_and_after() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let location = s.create_location(&admin, 10).await;
    let mut ids = Vec::new();
    for name in ["A", "B", "C"] {
        let r = s
            .post("/events", Some(&admin),
                  json!({"Name": name, "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}, "Hall": "Main"}))
            .await;
        ids.push(body(r).await["ID"].as_str().unwrap().to_owned());
    }
    let page = body(
        s.get(&format!("/events?limit=1&after={}", ids[0]), None)
            .await,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["ID"], ids[1].as_str());
    let all = body(s.get("/events", None).await).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn sales_follow_bookings_and_cancellations() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let first = body(s.book(&event, 3, "a@example.com").await).await;
    s.book(&event, 2, "b@example.com").await;
    let (id, token) = (
        first["ID"].as_str().unwrap(),
        first["Token"].as_str().unwrap(),
    );
    s.delete(&format!("/bookings/{id}?token={token}"), None)
        .await;
    let path = format!("/events/{event}/sales");
    crate::helpers::eventually("sales caught up", || async {
        let sales = body(s.get(&path, Some(&admin)).await).await;
        sales == json!({"EventID": event, "SeatsSold": 2, "Bookings": 2, "Cancellations": 1})
    })
    .await;
    let all = body(s.get("/sales", Some(&admin)).await).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_error(
        s.get("/events/unknown/sales", Some(&admin)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
