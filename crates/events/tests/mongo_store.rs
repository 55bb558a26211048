//! The event store conformance suite against MongoDB: each test in a fresh database on the
//! server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).

use std::sync::Arc;

use events::conformance;
use events::{EventStore, MongoEventStore};
use mongo::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoEventStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_db, store) = fresh().await;
            conformance::$name(store).await;
        }
    )*};
}

conformance_tests!(
    locations_and_events_round_trip,
    an_event_may_bring_its_own_location,
    cancelling_emits_event_cancelled_once,
    redelivered_booking_events_count_once,
);
