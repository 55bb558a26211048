//! The user store conformance suite against DynamoDB: each test in a fresh set of tables (a
//! prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).
#![cfg(feature = "dynamodb")]

use std::sync::Arc;

use dynamo::testing::TestDatabase;
use users::conformance;
use users::{DynamoUserStore, UserStore};

async fn fresh() -> (TestDatabase, Arc<dyn UserStore>) {
    let db = TestDatabase::create();
    let store = DynamoUserStore::connect(&db.url).expect("a valid DynamoDB URL");
    (db, Arc::new(store))
}

users::conformance_tests!(fresh);

/// Starting twice (two processes, or a restart) runs the migrations again harmlessly.
#[tokio::test]
async fn migrating_twice_keeps_the_data() {
    let (db, store) = fresh().await;
    conformance::migrating_again_keeps_the_data(store, || async {
        let again = DynamoUserStore::connect(&db.url).unwrap();
        again.migrate().await.expect("second migration");
        Arc::new(again) as Arc<dyn UserStore>
    })
    .await;
}
