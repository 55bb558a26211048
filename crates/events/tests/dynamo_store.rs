//! The event store conformance suite against DynamoDB: each test in a fresh set of tables (a
//! prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).

use std::sync::Arc;

use dynamo::testing::TestDatabase;
use events::conformance;
use events::{DynamoEventStore, EventStore};

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create();
    let store = DynamoEventStore::connect(&db.url).expect("a valid DynamoDB URL");
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
