//! The event store conformance suite against MongoDB: each test in a fresh database on the
//! server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).
#![cfg(feature = "mongodb")]

use std::sync::Arc;

use events::{EventStore, MongoEventStore};
use mongo::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoEventStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

events::conformance_tests!(fresh);
