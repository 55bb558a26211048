//! The bus conformance suite against a real SQS/SNS: moto (`moto_server -H 127.0.0.1 -p 5000`) at
//! `MYEVENTS_TEST_SQS_URL`, by default `sqs://127.0.0.1:5000`. Each test uses topic and queue
//! names of its own, so runs never see each other's messages.
//!
//! The broker-restart tests of the suite are not here: moto is shared by every test, so a test
//! cannot restart it.
#![cfg(feature = "sqs")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::Message;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bus::sqs::SqsBus;
use bus::{Bus, Handler, Outcome, Subscription, conformance};
use contracts::{DomainEvent, Envelope};
use tokio_util::sync::CancellationToken;

fn url() -> String {
    std::env::var("MYEVENTS_TEST_SQS_URL").unwrap_or_else(|_| "sqs://127.0.0.1:5000".to_owned())
}

/// Names may hold letters, digits, hyphens and underscores, 80 characters with `.fifo`.
fn namespace() -> String {
    format!("test-{}-", uuid::Uuid::now_v7().simple())
}

fn open(namespace: &str) -> SqsBus {
    SqsBus::with_namespace(&url(), namespace)
        .expect("a valid SQS URL")
        // Short long polls, so that a stopped consumer gives back what it holds at once.
        .with_wait_time(Duration::from_secs(1))
}

fn broker_in(namespace: &str) -> impl Fn() -> std::future::Ready<SqsBus> + '_ {
    move || std::future::ready(open(namespace))
}

fn broker() -> impl Fn() -> std::future::Ready<SqsBus> {
    let namespace = namespace();
    move || std::future::ready(open(&namespace))
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
    // Parked means kept in the dead-letter queue with the reason, not dropped.
    let parked = dead_letters(&namespace, "poison").await;
    assert_eq!(parked.len(), 1, "one message parked: {parked:?}");
    assert_eq!(attribute(&parked[0], "entity_key").as_deref(), Some("bad"));
    assert_eq!(
        attribute(&parked[0], "event_name").as_deref(),
        Some("eventCancelled")
    );
    assert_eq!(
        attribute(&parked[0], "error").as_deref(),
        Some("refused by the test")
    );
}

/// Asks for every message to be retried.
struct AlwaysRetry(AtomicU32);

#[async_trait]
impl Handler for AlwaysRetry {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<Outcome>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(vec![Outcome::Retry("not yet".into()); batch.len()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_parked_after_max_attempts() {
    let namespace = namespace();
    let bus = open(&namespace);
    let subscription = subscription("stubborn");
    bus.declare(&subscription).await.expect("declare");
    let handler = Arc::new(AlwaysRetry(AtomicU32::new(0)));
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription, handler.clone(), stop.clone());
    bus.publish(&[conformance::cancelled("stuck")])
        .await
        .expect("publish");
    let mut parked = Vec::new();
    for _ in 0..30 {
        parked = dead_letters(&namespace, "stubborn").await;
        if !parked.is_empty() {
            break;
        }
    }
    stop.cancel();
    let _ = task.await;
    assert_eq!(parked.len(), 1, "the message was parked");
    assert_eq!(
        attribute(&parked[0], "error").as_deref(),
        Some("kept failing: not yet")
    );
    assert_eq!(handler.0.load(Ordering::SeqCst), bus::sqs::MAX_ATTEMPTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_an_event_name_is_parked() {
    let namespace = namespace();
    let bus = open(&namespace);
    let subscription = subscription("nameless");
    bus.declare(&subscription).await.expect("declare");
    let sqs = client();
    let queue = queue_url(&sqs, &format!("{namespace}nameless.fifo")).await;
    sqs.send_message()
        .queue_url(queue)
        .message_body("{}")
        .message_group_id("g")
        .message_deduplication_id("nameless")
        .send()
        .await
        .expect("send a message without attributes");
    let recorder = conformance::Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription, recorder.clone(), stop.clone());
    let good = conformance::cancelled("after");
    bus.publish(std::slice::from_ref(&good))
        .await
        .expect("publish");
    conformance::eventually("the next event arrived", || recorder.applied().len() == 1).await;
    stop.cancel();
    let _ = task.await;
    assert_eq!(recorder.applied()[0].id, good.id);
    let parked = dead_letters(&namespace, "nameless").await;
    assert_eq!(parked.len(), 1, "the nameless message was parked");
    assert_eq!(
        attribute(&parked[0], "error").as_deref(),
        Some("no event_name attribute")
    );
}

/// A consumer whose queue disappears (a broker that lost its state) declares it again and goes
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_declares_its_queue_again_when_it_disappears() {
    let namespace = namespace();
    let bus = open(&namespace);
    let subscription = subscription("phoenix");
    bus.declare(&subscription).await.expect("declare");
    let recorder = conformance::Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription, recorder.clone(), stop.clone());
    bus.publish(&[conformance::cancelled("p1")])
        .await
        .expect("publish");
    conformance::eventually("the first event arrived", || recorder.applied().len() == 1).await;

    let sqs = client();
    let name = format!("{namespace}phoenix.fifo");
    sqs.delete_queue()
        .queue_url(queue_url(&sqs, &name).await)
        .send()
        .await
        .expect("delete the queue");
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        back = sqs.get_queue_url().queue_name(&name).send().await.is_ok();
        if back {
            break;
        }
    }
    assert!(back, "the consumer declared its queue again");
    bus.publish(&[conformance::cancelled("p2")])
        .await
        .expect("publish");
    conformance::eventually("the second event arrived", || recorder.applied().len() == 2).await;
    stop.cancel();
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_does_not_answer_is_reported_not_ready() {
    let bus = SqsBus::new("sqs://127.0.0.1:1").expect("a valid SQS URL");
    let reason = bus.check().await.expect_err("nothing listens on port 1");
    assert!(reason.contains("SQS"), "{reason}");
}

#[test]
fn a_malformed_url_is_refused_naming_it() {
    let Err(error) = SqsBus::new("sqs://host:5000/queue") else {
        panic!("a path is refused");
    };
    assert!(
        error.to_string().contains("sqs://host:5000/queue"),
        "{error}"
    );
}

fn subscription(group: &str) -> Subscription {
    Subscription {
        group: group.to_owned(),
        events: vec![DomainEvent::EVENT_CANCELLED],
    }
}

/// A plain SQS client on the test broker, to look behind the bus.
fn client() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .endpoint_url(url().replacen("sqs://", "http://", 1))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name} exists: {e}"))
        .queue_url()
        .expect("a queue URL")
        .to_owned()
}

/// What waits in `group`'s dead-letter queue (received with a long poll of a second, then
/// visible again right away for the next look).
async fn dead_letters(namespace: &str, group: &str) -> Vec<Message> {
    let sqs = client();
    let dead = queue_url(&sqs, &format!("{namespace}{group}-dead-letter.fifo")).await;
    let received = sqs
        .receive_message()
        .queue_url(&dead)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive from the dead-letter queue");
    received.messages.unwrap_or_default()
}

fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_history_says_so() {
    conformance::a_broker_without_history_says_so(broker()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_and_oldest_unapplied_age_show_what_waits() {
    conformance::a_groups_lag_and_oldest_unapplied_age_show_what_waits(broker()).await;
}
