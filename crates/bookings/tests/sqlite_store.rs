//! The booking store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use bookings::{BookingStore, SqliteBookingStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn BookingStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteBookingStore::open(&dir.path().join("bookings.db")).unwrap();
    (dir, Arc::new(store))
}

bookings::conformance_tests!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_booking_fails_alone_among_those_queued_with_it() {
    let (_guard, store) = fresh().await;
    bookings::conformance::a_failing_booking_fails_alone_among_those_queued_with_it(store).await;
}
