//! The event store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use events::{EventStore, SqlEventStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlEventStore::open(&dir.path().join("events.db")).unwrap();
    (dir, Arc::new(store))
}

events::conformance_tests!(fresh);

/// A database made before events had a limit of seats per customer opens, keeps its events
/// (without a limit), and stores new ones with a limit.
#[tokio::test]
async fn a_database_from_before_limits_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let old = sqlite::rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE locations (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
             address TEXT NOT NULL, country TEXT NOT NULL, open_time INTEGER NOT NULL,
             close_time INTEGER NOT NULL, halls TEXT NOT NULL);
         CREATE TABLE events (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
             duration INTEGER NOT NULL, start_date INTEGER NOT NULL, end_date INTEGER NOT NULL,
             location_id TEXT NOT NULL REFERENCES locations (id), hall TEXT NOT NULL,
             capacity INTEGER NOT NULL, status TEXT NOT NULL);
         INSERT INTO locations (id, name, address, country, open_time, close_time, halls)
             VALUES ('l1', 'Opera', '', '', 0, 24, '[{\"name\":\"Main\",\"location\":\"\",\"capacity\":100}]');
         INSERT INTO events (id, name, duration, start_date, end_date, location_id, hall, capacity, status)
             VALUES ('old', 'Old show', 60, 0, 3600, 'l1', 'Main', 100, 'active');",
    )
    .unwrap();
    drop(old);

    let store = SqlEventStore::open(&path).unwrap();
    let old = store.event("old").await.unwrap().expect("kept");
    assert_eq!(old.seats_per_customer, None);
    let new = events::domain::Event {
        id: "new".into(),
        seats_per_customer: Some(2),
        ..old
    };
    store.create_event(new.clone(), false).await.unwrap();
    assert_eq!(store.event("new").await.unwrap(), Some(new));
    drop(store);
    // Opening again runs the migration again, harmlessly.
    SqlEventStore::open(&path).unwrap();
}
