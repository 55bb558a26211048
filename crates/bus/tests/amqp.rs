//! The bus conformance suite against a real RabbitMQ (`.ci/run` makes sure one answers at
//! `MYEVENTS_TEST_AMQP_URL`, by default the local guest account). Each test uses exchange and
//! queue names of its own, so runs never see each other's messages.
#![cfg(feature = "rabbitmq")]

use bus::amqp::AmqpBus;
use bus::conformance;

fn url() -> String {
    std::env::var("MYEVENTS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn namespace() -> String {
    format!("test-{}.", uuid::Uuid::now_v7())
}

fn broker_in(namespace: &str) -> impl Fn() -> std::future::Ready<AmqpBus> + '_ {
    move || std::future::ready(AmqpBus::with_namespace(&url(), namespace))
}

fn broker() -> impl Fn() -> std::future::Ready<AmqpBus> {
    let namespace = namespace();
    move || std::future::ready(AmqpBus::with_namespace(&url(), &namespace))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_event_in_order() {
    conformance::every_group_gets_every_event_in_order(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_come_again_after_restart() {
    conformance::unacknowledged_events_come_again_after_restart(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_applied_once() {
    conformance::a_duplicate_is_applied_once(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_and_the_rest_flow() {
    let namespace = namespace();
    conformance::a_poison_message_is_parked_and_the_rest_flow(broker_in(&namespace)).await;
    // Parked means kept in the dead-letter queue, not dropped.
    let connection = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let dead = format!("{namespace}poison.dead-letter");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut parked = 0;
    for _ in 0..50 {
        let queue = channel
            .queue_declare(&dead, passive, lapin::types::FieldTable::default())
            .await
            .unwrap();
        parked = queue.message_count();
        if parked == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(parked, 1, "the poison message is in {dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_answer_is_reported_not_ready() {
    let bus = AmqpBus::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let reason = bus::Bus::check(&bus)
        .await
        .expect_err("nothing listens on port 1");
    assert!(reason.contains("RabbitMQ"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_history_says_so() {
    conformance::a_broker_without_history_says_so(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_and_oldest_unapplied_age_show_what_waits() {
    conformance::a_groups_lag_and_oldest_unapplied_age_show_what_waits(broker()).await;
}
