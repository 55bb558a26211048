//! RabbitMQ restarting under a running service: the shared test broker is stopped and started
//! again (`rabbitmqctl stop_app` / `start_app`), so these checks live in a test binary of their
//! own, which cargo runs while no other test uses the broker, and in one test, one after the
//! other. Durable queues and persistent messages survive the restart.
#![cfg(feature = "rabbitmq")]

use std::process::Command;
use std::time::Duration;

use bus::amqp::AmqpBus;
use bus::conformance;

fn url() -> String {
    std::env::var("MYEVENTS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn broker() -> impl Fn() -> std::future::Ready<AmqpBus> {
    let namespace = format!("test-{}.", uuid::Uuid::now_v7());
    move || std::future::ready(AmqpBus::with_namespace(&url(), &namespace))
}

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .args(["-q", command])
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {command} failed");
}

async fn restart_rabbitmq() {
    rabbitmqctl("stop_app");
    tokio::time::sleep(Duration::from_millis(500)).await;
    rabbitmqctl("start_app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    conformance::a_broker_restart_loses_nothing_published_around_it(broker(), restart_rabbitmq)
        .await;
    conformance::messages_waiting_in_the_broker_survive_its_restart(broker(), restart_rabbitmq)
        .await;
}
