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

/// Two replicas of one service consume its queue: RabbitMQ delivers to one of them at a time
/// (a single active consumer), so each entity's events are applied in the order they were
/// published; when that replica goes, the other takes over where it stopped. Competing consumers
/// would split the queue between the two, an entity's events with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_service_take_its_queue_in_turn_and_keep_each_entitys_order() {
    use bus::Bus;
    use std::collections::HashMap;

    let namespace = namespace();
    let subscription = || bus::Subscription {
        group: "replicated".into(),
        events: vec![contracts::DomainEvent::EVENT_CANCELLED],
    };
    let (first_bus, second_bus) = (
        AmqpBus::with_namespace(&url(), &namespace),
        AmqpBus::with_namespace(&url(), &namespace),
    );
    first_bus.declare(&subscription()).await.unwrap();
    let (first, second) = (conformance::Recorder::new(), conformance::Recorder::new());
    let (first_stop, second_stop) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let first_task = first_bus.subscribe(subscription(), first.clone(), first_stop.clone());
    let second_task = second_bus.subscribe(subscription(), second.clone(), second_stop.clone());
    // Both consumers are registered before anything is published.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let publish = |count: usize| {
        let events: Vec<contracts::Envelope> = (0..count)
            .map(|i| conformance::cancelled(&format!("e{}", i % 10)))
            .collect();
        events
    };
    let before = publish(200);
    for chunk in before.chunks(20) {
        first_bus.publish(chunk).await.unwrap();
    }
    conformance::eventually("the 200 events are applied", || {
        first.applied().len() + second.applied().len() == 200
    })
    .await;
    let first_took_them = !first.applied().is_empty();
    let ((active, active_stop, active_task), (standby, standby_stop, _)) = if first_took_them {
        (
            (first, first_stop, first_task),
            (second, second_stop, second_task),
        )
    } else {
        (
            (second, second_stop, second_task),
            (first, first_stop, first_task),
        )
    };
    assert_eq!(active.applied().len(), 200, "one consumer took them all");
    assert!(standby.applied().is_empty(), "the other stood by");

    // The active replica goes; the one standing by takes the rest.
    active_stop.cancel();
    let _ = active_task.await;
    let after = publish(100);
    for chunk in after.chunks(20) {
        first_bus.publish(chunk).await.unwrap();
    }
    conformance::eventually("the standby applies the next 100", || {
        standby.applied().len() == 100
    })
    .await;

    let ids = |events: Vec<contracts::Envelope>| {
        let mut per_entity: HashMap<String, Vec<String>> = HashMap::new();
        for e in events {
            per_entity.entry(e.key).or_default().push(e.id);
        }
        per_entity
    };
    let applied: Vec<contracts::Envelope> = active
        .applied()
        .into_iter()
        .chain(standby.applied())
        .collect();
    let sent: Vec<contracts::Envelope> = before.into_iter().chain(after).collect();
    assert_eq!(ids(applied), ids(sent), "each entity's events in order");
    standby_stop.cancel();
}
