//! The booking store conformance suite against MongoDB: each test in fresh databases on the
//! server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).

use std::sync::Arc;

use bookings::conformance;
use bookings::{BookingStore, MongoBookingStore};
use mongo::testing::TestDatabase;

async fn fresh() -> (TestDatabase, Arc<dyn BookingStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoBookingStore::connect(&db.url).expect("a valid database URL");
    (db, Arc::new(store))
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_db, store) = fresh().await;
            conformance::$name(store).await;
        }
    )*};
}

conformance_tests!(
    seats_are_taken_and_refused_when_short,
    an_idempotency_key_books_once,
    a_cancelled_booking_returns_its_seats_once,
    a_cancelled_event_cancels_its_bookings_and_takes_no_more,
    redelivered_events_change_nothing,
    a_cancellation_before_its_creation_is_retried,
    listing_filters_by_user_and_event,
    concurrent_clients_never_oversell,
    concurrent_retries_with_one_key_book_once,
    a_rebuilt_state_is_restored_into_an_empty_store,
    customers_cancel_while_the_event_is_cancelled,
);
