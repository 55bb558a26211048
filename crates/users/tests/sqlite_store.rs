//! The user store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use users::conformance;
use users::{SqliteUserStore, UserStore};

fn fresh() -> (tempfile::TempDir, Arc<dyn UserStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteUserStore::open(&dir.path().join("users.db")).unwrap();
    (dir, Arc::new(store))
}

#[tokio::test]
async fn accounts_are_unique_by_email() {
    let (_dir, store) = fresh();
    conformance::accounts_are_unique_by_email(store).await;
}

#[tokio::test]
async fn set_admin_creates_or_promotes() {
    let (_dir, store) = fresh();
    conformance::set_admin_creates_or_promotes(store).await;
}
