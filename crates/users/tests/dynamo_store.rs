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

/// Two stores on one database, as two replicas of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_failure_counts() {
    let (db, store) = fresh().await;
    let second = Arc::new(DynamoUserStore::connect(&db.url).unwrap());
    conformance::replicas_share_the_failure_counts(store, second).await;
}

/// DynamoDB deletes expired failure counts itself, by the table's time to live (the other
/// backends delete them on the next failure: `expired_failures_are_pruned`).
#[tokio::test]
async fn failure_counts_expire_by_the_tables_time_to_live() {
    let (db, store) = fresh().await;
    store.add_failure("k", 0, 1_000).await.unwrap();
    let raw = dynamo::Dynamo::open(
        &db.url,
        dynamo::Options {
            service: "users",
            tables: Vec::new(),
        },
    )
    .unwrap();
    let described = raw
        .client()
        .await
        .unwrap()
        .describe_time_to_live()
        .table_name(raw.table("signin_failures"))
        .send()
        .await
        .unwrap();
    let ttl = described.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(
        ttl.time_to_live_status(),
        Some(&dynamo::aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
    );
}
