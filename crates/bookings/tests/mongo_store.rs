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
