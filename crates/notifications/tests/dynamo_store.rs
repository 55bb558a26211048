//! The notification store conformance suite against DynamoDB: each test in a fresh set of tables
//! (a prefix of its own) on the server `MYEVENTS_TEST_DYNAMODB_URL` names (default: the local moto).

use std::sync::Arc;

use dynamo::testing::TestDatabase;
use notifications::conformance;
use notifications::{DynamoNotificationStore, NotificationStore};

async fn fresh() -> (TestDatabase, Arc<dyn NotificationStore>) {
    let db = TestDatabase::create();
    let store = DynamoNotificationStore::connect(&db.url).expect("a valid DynamoDB URL");
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
