//! The notification store conformance suite against DynamoDB: each test in a fresh set of tables
//! (a prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).
#![cfg(feature = "dynamodb")]

use std::sync::Arc;

use dynamo::testing::TestDatabase;
use notifications::{DynamoNotificationStore, NotificationStore};

async fn fresh() -> (TestDatabase, Arc<dyn NotificationStore>) {
    let db = TestDatabase::create();
    let store = DynamoNotificationStore::connect(&db.url).expect("a valid DynamoDB URL");
    (db, Arc::new(store))
}

notifications::conformance_tests!(fresh);
