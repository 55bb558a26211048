//! The booking store conformance suite against DynamoDB: each test in a fresh set of tables (a
//! prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).
#![cfg(feature = "dynamodb")]

use std::sync::Arc;

use bookings::conformance;
use bookings::{BookingStore, DynamoBookingStore};
use dynamo::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn BookingStore>) {
    let db = TestDatabase::create();
    let store = DynamoBookingStore::connect(&db.url).expect("a valid DynamoDB URL");
    (db, Arc::new(store))
}

bookings::conformance_tests!(fresh);

/// An event with more active bookings than one DynamoDB transaction can release: they are
/// released in chunks, every one exactly once, and a redelivery changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_more_bookings_than_a_transaction_holds_is_cancelled_whole() {
    use bookings::domain::{BookOutcome, BookingStatus};
    let (_db, store) = fresh().await;
    let outcomes = store
        .apply(vec![(
            "created".into(),
            conformance::created("big", 200).into(),
        )])
        .await
        .unwrap();
    assert_eq!(outcomes, [bus::Outcome::Applied]);
    let mut ids = Vec::new();
    for i in 0..100 {
        match store
            .book(conformance::request("big", 1, &format!("c{i}")))
            .await
            .unwrap()
            .outcome
        {
            BookOutcome::Booked { booking } => ids.push(booking.id),
            other => panic!("expected a booking, got {other:?}"),
        }
    }
    for _ in 0..2 {
        store
            .apply(vec![(
                "cancel".into(),
                conformance::cancelled("big").into(),
            )])
            .await
            .unwrap();
    }
    for id in &ids {
        let status = store.booking(id).await.unwrap().expect("known").status;
        assert_eq!(status, BookingStatus::EventCancelled, "{id}");
    }
    let availability = store.availability("big").await.unwrap().unwrap();
    assert_eq!(availability.available, 200);
    let pending = store.outbox().pending(0, 10_000).await.unwrap();
    let released = pending
        .iter()
        .filter(|(_, e)| e.name == "bookingCancelled")
        .count();
    assert_eq!(released, ids.len(), "one bookingCancelled per booking");
}
