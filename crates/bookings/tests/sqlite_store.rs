//! The booking store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use bookings::{BookingStore, SqliteBookingStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn BookingStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteBookingStore::open(&dir.path().join("bookings.db")).unwrap();
    (dir, Arc::new(store))
}

bookings::conformance_tests!(fresh);
