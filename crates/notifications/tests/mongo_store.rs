//! The notification store conformance suite against MongoDB: each test in a fresh database
//! on the server `MYEVENTS_TEST_MONGO_URL` names (default: the local one).

use std::sync::Arc;

use mongo::testing::TestDatabase;
use notifications::conformance;
use notifications::{MongoNotificationStore, NotificationStore};

async fn fresh() -> (TestDatabase, Arc<dyn NotificationStore>) {
    let db = TestDatabase::create()
        .await
        .expect("a MongoDB server to create a test database in");
    let store = MongoNotificationStore::connect(&db.url).expect("a valid database URL");
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
    every_fact_queues_one_mail_and_redelivery_none,
    a_booking_before_its_event_is_retried,
    mails_are_due_until_sent_and_given_up_when_refused_for_good,
    facts_from_before_the_first_start_are_learnt_not_mailed,
);
