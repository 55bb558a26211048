//! The booking store conformance suite against PostgreSQL: each test in a fresh database on the
//! server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use bookings::{BookingStore, PgBookingStore};
use postgres::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn BookingStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = PgBookingStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

bookings::conformance_tests!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_booking_fails_alone_among_those_queued_with_it() {
    let (_guard, store) = fresh().await;
    bookings::conformance::a_failing_booking_fails_alone_among_those_queued_with_it(store).await;
}
