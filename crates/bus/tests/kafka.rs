//! The bus conformance suite against a real Kafka-protocol broker (tansu; `.ci/run` makes sure
//! one answers at `MYEVENTS_TEST_KAFKA_BROKERS`, by default 127.0.0.1:9092). Each test uses topic
//! and group names of its own, so runs never see each other's messages.
//!
//! The broker-restart tests start a tansu of their own (the binary at `MYEVENTS_TANSU_BIN`, its
//! data in the S3 bucket of the local moto at `MYEVENTS_TEST_S3_URL`), so that they can kill it
//! without disturbing the other tests.
#![cfg(feature = "kafka")]

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::conformance;
use bus::kafka::KafkaBus;
use rdkafka::Message;
use rdkafka::consumer::Consumer;

fn brokers() -> String {
    std::env::var("MYEVENTS_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn namespace() -> String {
    format!("test-{}.", uuid::Uuid::now_v7().simple())
}

fn broker_at(brokers: String, namespace: String) -> impl Fn() -> std::future::Ready<KafkaBus> {
    move || std::future::ready(KafkaBus::with_namespace(&brokers, &namespace))
}

fn broker() -> impl Fn() -> std::future::Ready<KafkaBus> {
    broker_at(brokers(), namespace())
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
    conformance::a_poison_message_is_parked_and_the_rest_flow(broker_at(
        brokers(),
        namespace.clone(),
    ))
    .await;
    // Parked means kept on the dead-letter topic, not dropped.
    let bus = KafkaBus::with_namespace(&brokers(), &namespace);
    let reader = bus.consumer("poison-reader").unwrap();
    let dead = format!("{namespace}poison.dead-letter");
    reader.subscribe(&[&dead]).unwrap();
    let parked = tokio::time::timeout(Duration::from_secs(20), reader.recv())
        .await
        .expect("a parked message within 20 s")
        .unwrap();
    assert_eq!(parked.key(), Some("bad".as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_answer_is_reported_not_ready() {
    let bus = KafkaBus::new("127.0.0.1:1");
    let reason = bus::Bus::check(&bus)
        .await
        .expect_err("nothing listens on port 1");
    assert!(reason.contains("Kafka"), "{reason}");
}

/// A tansu of this test's own, on its own port and S3 bucket, that can be killed and started
/// again with its data.
struct OwnBroker {
    port: u16,
    bucket: String,
    child: Mutex<Option<Child>>,
}

impl OwnBroker {
    fn start() -> Arc<OwnBroker> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bucket = format!("tansu-{}", uuid::Uuid::now_v7().simple());
        let s3 = s3_url();
        let made = Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("{s3}/{bucket}")])
            .status()
            .expect("curl");
        assert!(made.success(), "cannot create bucket {bucket} at {s3}");
        let broker = Arc::new(OwnBroker {
            port,
            bucket,
            child: Mutex::new(None),
        });
        broker.run();
        broker
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn run(&self) {
        let bin = std::env::var("MYEVENTS_TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
            .env("AWS_ENDPOINT", s3_url())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (MYEVENTS_TANSU_BIN)");
        *self.child.lock().unwrap() = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tansu did not listen on {}", self.port);
    }

    /// kill -9 and start again on the same port and data.
    async fn restart(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.run();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn s3_url() -> String {
    std::env::var("MYEVENTS_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_published_around_it() {
    let own = OwnBroker::start();
    let restarted = own.clone();
    conformance::a_broker_restart_loses_nothing_published_around_it(
        broker_at(own.brokers(), namespace()),
        || async move { restarted.restart().await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_in_the_broker_survive_its_restart() {
    let own = OwnBroker::start();
    let restarted = own.clone();
    conformance::messages_waiting_in_the_broker_survive_its_restart(
        broker_at(own.brokers(), namespace()),
        || async move { restarted.restart().await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_holds_everything_published() {
    conformance::the_history_holds_everything_published(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_and_oldest_unapplied_age_show_what_waits() {
    conformance::a_groups_lag_and_oldest_unapplied_age_show_what_waits(broker()).await;
}
