//! The booking store conformance suite against SQLite (a real database file).

use std::sync::Arc;

use bookings::{BookingStore, SqlBookingStore};

async fn fresh() -> (tempfile::TempDir, Arc<dyn BookingStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlBookingStore::open(&dir.path().join("bookings.db")).unwrap();
    (dir, Arc::new(store))
}

bookings::conformance_tests!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_state_is_restored_into_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlBookingStore::open(&dir.path().join("bookings.db")).unwrap();
    bookings::conformance::a_rebuilt_state_is_restored_into_an_empty_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_booking_fails_alone_among_those_queued_with_it() {
    let (_guard, store) = fresh().await;
    bookings::conformance::a_failing_booking_fails_alone_among_those_queued_with_it(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_share_commits() {
    let (dir, store) = fresh().await;
    let wal = dir.path().join("bookings.db-wal");
    bookings::conformance::concurrent_bookings_share_commits(store, || {
        let commits = wal_commits(&wal);
        async move { commits }
    })
    .await;
}

/// The transactions committed to a database through its write-ahead log: SQLite marks the
/// last frame of each committed transaction with the database's size after it (other frames
/// hold 0 there). Frames are counted while they carry the log's current salt (frames of an
/// older generation of the file stay behind it after a checkpoint restarts the log; the
/// checks here write far too little for one). Every commit of the file is counted: while the
/// check runs, only its bookings are written.
fn wal_commits(wal: &std::path::Path) -> u64 {
    let bytes = std::fs::read(wal).expect("the database's write-ahead log");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(
        bytes.len() >= 32 && (word(0) & !1) == 0x377f_0682,
        "not a SQLite WAL"
    );
    let page_size = word(8) as usize;
    let salt = (word(16), word(20));
    let mut commits = 0;
    let mut frame = 32;
    while frame + 24 + page_size <= bytes.len() && (word(frame + 8), word(frame + 12)) == salt {
        if word(frame + 4) != 0 {
            commits += 1;
        }
        frame += 24 + page_size;
    }
    commits
}
