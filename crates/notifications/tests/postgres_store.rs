//! The notification store conformance suite against PostgreSQL: each test in a fresh database
//! on the server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use notifications::{NotificationStore, SqlNotificationStore};
use postgres::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn NotificationStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = SqlNotificationStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

notifications::conformance_tests!(fresh);
