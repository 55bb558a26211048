//! The user store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use users::{SqliteUserStore, UserStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn UserStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteUserStore::open(&dir.path().join("users.db")).unwrap();
    (dir, Arc::new(store))
}

users::conformance_tests!(fresh);
