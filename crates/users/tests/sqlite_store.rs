//! The user store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use users::{SqlUserStore, UserStore, conformance};

async fn fresh() -> (tempfile::TempDir, Arc<dyn UserStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlUserStore::open(&dir.path().join("users.db")).unwrap();
    (dir, Arc::new(store))
}

users::conformance_tests!(fresh);

/// Two stores on one file, as two processes sharing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_failure_counts() {
    let (dir, store) = fresh().await;
    let second = Arc::new(SqlUserStore::open(&dir.path().join("users.db")).unwrap());
    conformance::replicas_share_the_failure_counts(store, second).await;
}

#[tokio::test]
async fn expired_failures_are_pruned() {
    let (_dir, store) = fresh().await;
    conformance::expired_failures_are_pruned(store).await;
}
