//! The booking store conformance suite against MongoDB: each test in fresh databases on the
//! server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).
#![cfg(feature = "mongodb")]

use std::sync::Arc;

use bookings::{BookingStore, MongoBookingStore};
use mongo::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn BookingStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoBookingStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

bookings::conformance_tests!(fresh);

/// Two stores on one database, as two bookings processes would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_their_locations_meet_between_processes() {
    let (db, one) = fresh().await;
    let other = MongoBookingStore::connect(&db.url).expect("a valid database URL");
    bookings::conformance::events_and_their_locations_meet_between(one, Arc::new(other)).await;
}
