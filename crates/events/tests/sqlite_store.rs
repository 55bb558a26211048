//! The event store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use events::conformance;
use events::{EventStore, SqliteEventStore};

fn fresh() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(&dir.path().join("events.db")).unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn locations_and_events_round_trip() {
    let (_dir, store) = fresh();
    conformance::locations_and_events_round_trip(store).await;
}

#[tokio::test]
async fn an_event_may_bring_its_own_location() {
    let (_dir, store) = fresh();
    conformance::an_event_may_bring_its_own_location(store).await;
}

#[tokio::test]
async fn cancelling_emits_event_cancelled_once() {
    let (_dir, store) = fresh();
    conformance::cancelling_emits_event_cancelled_once(store).await;
}

#[tokio::test]
async fn redelivered_booking_events_count_once() {
    let (_dir, store) = fresh();
    conformance::redelivered_booking_events_count_once(store).await;
}
