//! Each service on a database of another kind, as the reference ran a database per service,
//! each in a process of its own, over a real broker: the whole story of `one_process_per_service`
//! holds, in two arrangements that between them put every service on every kind but one.

use crate::invariants::{Replay, one_process_per_service};

/// Events on PostgreSQL, bookings on MongoDB (which refuses replays), users on DynamoDB,
/// notifications on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_on_a_database_of_its_own_kind_over_rabbitmq() {
    let pg = postgres::testing::TestDatabase::create()
        .await
        .expect("a PostgreSQL server");
    let mongo = mongo::testing::TestDatabase::create()
        .await
        .expect("a MongoDB server");
    let dynamo = dynamo::testing::TestDatabase::create();
    let amqp = crate::helpers::amqp_url();
    let namespace = format!("mixed-{}.", uuid::Uuid::now_v7().simple());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &amqp),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
            ("MYEVENTS_EVENTS_STORAGE_URL", &pg.url),
            ("MYEVENTS_BOOKINGS_STORAGE_URL", &mongo.url),
            ("MYEVENTS_USERS_STORAGE_URL", &dynamo.url),
        ],
        Replay::RefusedByStorage("not supported on MongoDB"),
    )
    .await;
}

/// Events on MongoDB, bookings on PostgreSQL (so the replay rebuilds them from Kafka's
/// history), users on SQLite, notifications on DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_on_a_database_of_its_own_kind_over_kafka() {
    let pg = postgres::testing::TestDatabase::create()
        .await
        .expect("a PostgreSQL server");
    let mongo = mongo::testing::TestDatabase::create()
        .await
        .expect("a MongoDB server");
    let dynamo = dynamo::testing::TestDatabase::create();
    let kafka = crate::helpers::kafka_url();
    let namespace = format!("mixed-{}.", uuid::Uuid::now_v7().simple());
    one_process_per_service(
        &[
            ("MYEVENTS_BROKER_URL", &kafka),
            ("MYEVENTS_BROKER_NAMESPACE", &namespace),
            ("MYEVENTS_EVENTS_STORAGE_URL", &mongo.url),
            ("MYEVENTS_BOOKINGS_STORAGE_URL", &pg.url),
            ("MYEVENTS_NOTIFICATIONS_STORAGE_URL", &dynamo.url),
        ],
        Replay::Rebuilds,
    )
    .await;
}
