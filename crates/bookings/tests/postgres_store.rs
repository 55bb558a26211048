//! The booking store conformance suite against PostgreSQL: each test in a fresh database on the
//! server `MYEVENTS_TEST_POSTGRES_URL` names (default: the local one).
#![cfg(feature = "postgres")]

use std::sync::Arc;

use bookings::{BookingStore, SqlBookingStore};
use postgres::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn BookingStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = SqlBookingStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

bookings::conformance_tests!(fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_state_is_restored_into_an_empty_store() {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL server to create a test database in");
    let store = SqlBookingStore::connect(&db.url).expect("a valid database URL");
    bookings::conformance::a_rebuilt_state_is_restored_into_an_empty_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_booking_fails_alone_among_those_queued_with_it() {
    let (_guard, store) = fresh().await;
    bookings::conformance::a_failing_booking_fails_alone_among_those_queued_with_it(store).await;
}

/// Two stores on one database, as two bookings processes would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_their_locations_meet_between_processes() {
    let (db, one) = fresh().await;
    let other = SqlBookingStore::connect(&db.url).expect("a valid database URL");
    bookings::conformance::events_and_their_locations_meet_between(one, Arc::new(other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bookings_share_commits() {
    let (db, store) = fresh().await;
    let url = db.url.clone();
    bookings::conformance::concurrent_bookings_share_commits(store, || {
        let url = url.clone();
        async move { transactions_that_wrote_bookings(&url).await }
    })
    .await;
}

/// How many transactions wrote the rows of the bookings table, as PostgreSQL records it: each
/// row's `xmin` is the transaction that wrote it.
async fn transactions_that_wrote_bookings(url: &str) -> u64 {
    use postgres::sqlx::{self, Connection};
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to the test database");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT xmin::text) FROM bookings.bookings")
        .fetch_one(&mut conn)
        .await
        .expect("count the transactions");
    count as u64
}
