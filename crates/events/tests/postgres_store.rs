//! The event store conformance suite against PostgreSQL: each test in a fresh database on the
//! server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use events::{EventStore, SqlEventStore};
use postgres::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn EventStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = SqlEventStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

events::conformance_tests!(fresh);

/// A database made before events had a limit of seats per customer is migrated: its events
/// are kept (without a limit), and new ones are stored with a limit.
#[tokio::test]
async fn a_database_from_before_limits_is_migrated() {
    use postgres::sqlx::{self, Connection as _};
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let mut old = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA events;
         CREATE TABLE events.locations (
             seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
             address TEXT NOT NULL, country TEXT NOT NULL, open_time BIGINT NOT NULL,
             close_time BIGINT NOT NULL, halls TEXT NOT NULL);
         CREATE TABLE events.events (
             seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
             duration BIGINT NOT NULL, start_date BIGINT NOT NULL, end_date BIGINT NOT NULL,
             location_id TEXT NOT NULL REFERENCES events.locations (id), hall TEXT NOT NULL,
             capacity BIGINT NOT NULL, status TEXT NOT NULL);
         INSERT INTO events.locations (id, name, address, country, open_time, close_time, halls)
             VALUES ('l1', 'Opera', '', '', 0, 24, '[{\"name\":\"Main\",\"location\":\"\",\"capacity\":100}]');
         INSERT INTO events.events (id, name, duration, start_date, end_date, location_id, hall, capacity, status)
             VALUES ('old', 'Old show', 60, 0, 3600, 'l1', 'Main', 100, 'active');",
    )
    .execute(&mut old)
    .await
    .unwrap();
    old.close().await.unwrap();

    let store = SqlEventStore::connect(&db.url).expect("a valid database URL");
    store.migrate().await.unwrap();
    let old = store.event("old").await.unwrap().expect("kept");
    assert_eq!(old.seats_per_customer, None);
    let new = events::domain::Event {
        id: "new".into(),
        seats_per_customer: Some(2),
        ..old
    };
    store.create_event(new.clone(), false).await.unwrap();
    assert_eq!(store.event("new").await.unwrap(), Some(new));
    // Migrating again is harmless.
    store.migrate().await.unwrap();
}
