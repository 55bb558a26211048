//! The user store conformance suite against PostgreSQL: each test in a fresh database on the
//! server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use postgres::testing::TestDatabase;
use users::conformance;
use users::{SqlUserStore, UserStore};

async fn fresh() -> (TestDatabase, Arc<dyn UserStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = SqlUserStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

users::conformance_tests!(fresh);

/// Starting twice (two processes, or a restart) runs the migrations again harmlessly.
#[tokio::test]
async fn migrating_twice_keeps_the_data() {
    let (db, store) = fresh().await;
    conformance::migrating_again_keeps_the_data(store, || async {
        let again = SqlUserStore::connect(&db.url).unwrap();
        again.migrate().await.expect("second migration");
        Arc::new(again) as Arc<dyn UserStore>
    })
    .await;
}

/// Two stores on one database, as two replicas of the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_failure_counts() {
    let (db, store) = fresh().await;
    let second = Arc::new(SqlUserStore::connect(&db.url).unwrap());
    conformance::replicas_share_the_failure_counts(store, second).await;
}

#[tokio::test]
async fn expired_failures_are_pruned() {
    let (_db, store) = fresh().await;
    conformance::expired_failures_are_pruned(store).await;
}
