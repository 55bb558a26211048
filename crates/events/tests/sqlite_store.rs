//! The event store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use events::{EventStore, SqliteEventStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn EventStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEventStore::open(&dir.path().join("events.db")).unwrap();
    (dir, Arc::new(store))
}

events::conformance_tests!(fresh);
