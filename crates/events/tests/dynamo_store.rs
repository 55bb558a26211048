//! The event store conformance suite against DynamoDB: each test in a fresh set of tables (a
//! prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).
#![cfg(feature = "dynamodb")]

use std::sync::Arc;

use dynamo::testing::TestDatabase;
use events::{DynamoEventStore, EventStore};

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create();
    let store = DynamoEventStore::connect(&db.url).expect("a valid DynamoDB URL");
    (db, Arc::new(store))
}

events::conformance_tests!(fresh);
