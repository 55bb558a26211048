//! The event store conformance suite against PostgreSQL: each test in a fresh database on the
//! server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use events::{EventStore, PgEventStore};
use postgres::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = PgEventStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

events::conformance_tests!(fresh);
