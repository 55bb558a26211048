//! The notification store conformance suite against MongoDB: each test in a fresh database
//! on the server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).
#![cfg(feature = "mongodb")]

use std::sync::Arc;

use mongo::testing::TestDatabase;
use notifications::{MongoNotificationStore, NotificationStore};

async fn fresh() -> (TestDatabase, Arc<dyn NotificationStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoNotificationStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

notifications::conformance_tests!(fresh);
