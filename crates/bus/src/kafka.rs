//! Kafka, with the wire format of SPEC §4: topic `events`, value `{"eventName": …, "payload": …}`,
//! key = the id of the entity the event is about (so one entity's events share a partition and
//! stay in order). Each consuming service is a consumer group that commits its offsets only after
//! its handler applied the messages; a message that can never be applied is copied to the topic
//! `<group>.dead-letter` and passed over.
//!
//! The producer is idempotent with `acks=all`, so a retried send neither duplicates nor reorders
//! within a partition; `publish` returns once every message of the batch is acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use futures_util::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, CONSUMER_LAG, record_outcome};
use crate::relay::backoff;
use crate::{Bus, BusError, Handler, Outcome, Subscription};

/// Partitions of a topic we create. Several, so that a busy topic can be read by several
/// instances of one service; order holds per key, which is all the services rely on.
const PARTITIONS: i32 = 3;
/// Most messages handed to a handler at once.
const BATCH: usize = 256;
/// How long a send may wait for the broker before it fails (the relay then tries again).
const SEND_TIMEOUT_MS: &str = "10000";
const ID_HEADER: &str = "message-id";
const OCCURRED_HEADER: &str = "occurred-at";
const TRACE_HEADER: &str = "traceparent";
const ERROR_HEADER: &str = "error";

#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    /// Prefixed to topic and group names; empty in production, unique per test run.
    namespace: String,
    producer: Mutex<Option<FutureProducer>>,
    /// Topics known to exist, so each is created at most once per process.
    topics: Mutex<HashSet<String>>,
}

/// The value of a message on the topic (SPEC §4). The payload is kept as the raw JSON it was.
#[derive(Deserialize)]
struct Value<'a> {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl KafkaBus {
    /// A bus on the Kafka cluster at `brokers` (`host:port[,host:port…]`, the reference's
    /// `KAFKA_BROKERS`). Nothing is connected yet: a service starts even when Kafka is not up.
    pub fn new(brokers: &str) -> Self {
        Self::with_namespace(brokers, "")
    }

    pub fn with_namespace(brokers: &str, namespace: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                namespace: namespace.to_owned(),
                producer: Mutex::new(None),
                topics: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn topic(&self) -> String {
        format!("{}events", self.inner.namespace)
    }

    fn group(&self, group: &str) -> String {
        format!("{}{group}", self.inner.namespace)
    }

    fn dead_letter_topic(&self, group: &str) -> String {
        format!("{}.dead-letter", self.group(group))
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.inner.brokers)
            .set("client.id", "myevents")
            .set("log_level", "3");
        config
    }

    fn producer_config(&self) -> ClientConfig {
        let mut config = self.config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", SEND_TIMEOUT_MS);
        config
    }

    /// A consumer in `group` reading from the earliest offset it has not committed.
    pub fn consumer(&self, group: &str) -> Result<StreamConsumer<Lag>, KafkaError> {
        let mut config = self.config();
        config
            .set("group.id", self.group(group))
            // librdkafka measures the lag (see `Lag`) this often.
            .set("statistics.interval.ms", "5000")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member that went away without leaving (killed) is noticed within seconds, and a
            // rebalance waits at most this long for members to rejoin.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "10000")
            // Low fetch wait: events propagate in milliseconds, not half a second.
            .set("fetch.wait.max.ms", "10")
            .set("enable.partition.eof", "false");
        config.create_with_context(Lag {
            group: group.to_owned(),
            topic: self.topic(),
        })
    }

    async fn producer(&self) -> Result<FutureProducer, BusError> {
        let mut producer = self.inner.producer.lock().await;
        if let Some(p) = producer.as_ref() {
            return Ok(p.clone());
        }
        let created: FutureProducer = self.producer_config().create().map_err(unavailable)?;
        *producer = Some(created.clone());
        Ok(created)
    }

    /// Creates `topic` unless it exists. Topics are created explicitly, not by the broker on
    /// first use, so that their partition count is ours.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        if self.inner.topics.lock().await.contains(topic) {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().map_err(unavailable)?;
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(
                // The topic is the system's history (`myevents replay`): kept without end.
                &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))
                    .set("retention.ms", "-1")],
                &options,
            )
            .await
            .map_err(unavailable)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Unavailable(format!(
                        "Kafka: cannot create topic {name}: {code}"
                    )));
                }
            }
        }
        self.inner.topics.lock().await.insert(topic.to_owned());
        Ok(())
    }

    async fn send(
        &self,
        producer: &FutureProducer,
        topic: &str,
        batch: &[Envelope],
        error: Option<&str>,
    ) -> Result<(), BusError> {
        let mut deliveries = Vec::with_capacity(batch.len());
        for envelope in batch {
            let value = value_of(envelope);
            let mut headers = OwnedHeaders::new()
                .insert(header(ID_HEADER, &envelope.id))
                .insert(header(OCCURRED_HEADER, &envelope.occurred_at.to_rfc3339()));
            if let Some(trace) = &envelope.trace {
                headers = headers.insert(header(TRACE_HEADER, trace));
            }
            if let Some(error) = error {
                headers = headers.insert(header(ERROR_HEADER, error));
            }
            let record = FutureRecord::to(topic)
                .key(envelope.key.as_bytes())
                .payload(value.as_bytes())
                .headers(headers);
            // Enqueued in order; the idempotent producer keeps that order on the wire.
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => return Err(unavailable(e)),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(unavailable(e)),
                Err(_) => return Err(BusError::Unavailable("Kafka: producer gone".into())),
            }
        }
        Ok(())
    }
}

/// Reports a consumer group's lag from librdkafka's statistics: per partition of the topic
/// assigned to this member, the high watermark less the offset the group committed, or less
/// the low watermark where the group has committed nothing yet (it starts at the earliest).
pub struct Lag {
    group: String,
    topic: String,
}

impl ClientContext for Lag {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        // Partition -1 is librdkafka's own; a negative offset is one not known yet.
        let lag: i64 = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
            .filter_map(|p| {
                let from = if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    p.lo_offset
                };
                (from >= 0).then(|| (p.hi_offset - from).max(0))
            })
            .sum();
        CONSUMER_LAG.with_label_values(&[&self.group]).set(lag);
    }
}

impl ConsumerContext for Lag {}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// `{"eventName": …, "payload": …}` with the payload embedded as the JSON it is. A payload that
/// is not JSON (it never is not; the outbox stores serialised events) is embedded as a string.
fn value_of(envelope: &Envelope) -> String {
    let name = serde_json::to_string(&envelope.name).unwrap_or_else(|_| "\"\"".into());
    if serde_json::from_str::<&RawValue>(&envelope.payload).is_ok() {
        format!(r#"{{"eventName":{name},"payload":{}}}"#, envelope.payload)
    } else {
        let payload = serde_json::to_string(&envelope.payload).unwrap_or_else(|_| "\"\"".into());
        format!(r#"{{"eventName":{name},"payload":{payload}}}"#)
    }
}

fn header_value(message: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The envelope of a message. A value that is not `{"eventName", "payload"}` still becomes an
/// envelope (with no name and the raw value as payload), so that the handler reports it as
/// poison and it is parked rather than lost.
pub fn envelope_of(message: &BorrowedMessage<'_>) -> Envelope {
    let raw = message.payload().unwrap_or_default();
    let (name, payload) = match serde_json::from_slice::<Value<'_>>(raw) {
        Ok(value) => (value.event_name, value.payload.get().to_owned()),
        Err(_) => (String::new(), String::from_utf8_lossy(raw).into_owned()),
    };
    Envelope {
        // A message from a producer that set no id gets one: applied, but not recognised if
        // it is delivered again.
        id: header_value(message, ID_HEADER).unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        occurred_at: header_value(message, OCCURRED_HEADER)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now),
        trace: header_value(message, TRACE_HEADER),
        payload,
        name,
    }
}

fn unavailable(e: KafkaError) -> BusError {
    BusError::Unavailable(format!("Kafka: {e}"))
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        let topic = self.topic();
        self.ensure_topic(&topic).await?;
        let producer = self.producer().await?;
        self.send(&producer, &topic, batch, None).await
    }

    /// A consumer group that has never committed starts from the beginning of the topic, so
    /// the topic existing is all a group needs to miss nothing.
    async fn declare(&self, subscription: &Subscription) -> Result<(), BusError> {
        self.ensure_topic(&self.topic()).await?;
        self.ensure_topic(&self.dead_letter_topic(&subscription.group))
            .await
    }

    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        crate::remote::keep_consuming(
            "Kafka",
            self.clone(),
            subscription,
            handler,
            shutdown,
            |bus, subscription, handler, shutdown| async move {
                bus.consume(&subscription, handler.as_ref(), &shutdown)
                    .await
            },
        )
    }

    async fn check(&self) -> Result<(), String> {
        let producer = self.producer().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| format!("Kafka: {e}"))
        })
        .await
        .map_err(|e| format!("Kafka: {e}"))?
    }

    /// Reads every partition of the topic from its first offset to its end, outside any
    /// consumer group's offsets (nothing is committed).
    async fn history(&self) -> Result<Vec<Envelope>, BusError> {
        let topic = self.topic();
        let mut config = self.config();
        config
            .set(
                "group.id",
                format!("{}replay-{}", self.inner.namespace, uuid::Uuid::now_v7()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        tokio::task::spawn_blocking(move || read_topic(&config, &topic))
            .await
            .map_err(|e| BusError::Unavailable(format!("Kafka: {e}")))?
    }
}

/// Every message of `topic`, read until every partition has reached the high watermark it had
/// at the start and then nothing more has arrived for `QUIET` (or `AFTER_END` has passed,
/// for a topic that others keep writing to). The watermark alone is not enough: some brokers
/// (tansu on object storage) report it late, after the messages are readable. A partition that
/// no longer starts at offset 0 has lost its beginning to retention, and is refused: a history
/// without it would rebuild a service that misses facts.
fn read_topic(config: &ClientConfig, topic: &str) -> Result<Vec<Envelope>, BusError> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    const QUIET: Duration = Duration::from_secs(2);
    const AFTER_END: Duration = Duration::from_secs(10);
    const POLL: Duration = Duration::from_millis(100);
    let consumer: BaseConsumer = config.create().map_err(unavailable)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(unavailable)?;
    let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    // A topic never created has no history; any other error is one.
    if let Some(error) = described.error() {
        if RDKafkaErrorCode::from(error) == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(Vec::new());
        }
        return Err(unavailable(KafkaError::MetadataFetch(error.into())));
    }
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in described.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), TIMEOUT)
            .map_err(unavailable)?;
        if low > 0 {
            return Err(BusError::Unsupported(format!(
                "Kafka topic {topic} partition {} starts at offset {low}: retention removed its \
                 beginning, so its history is incomplete",
                partition.id()
            )));
        }
        ends.insert(partition.id(), high);
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .map_err(unavailable)?;
    }
    consumer.assign(&assignment).map_err(unavailable)?;
    let mut history = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut quiet = Duration::ZERO;
    let mut reached_at: Option<Instant> = None;
    loop {
        match consumer.poll(POLL) {
            Some(message) => {
                let message = message.map_err(unavailable)?;
                quiet = Duration::ZERO;
                next.insert(message.partition(), message.offset() + 1);
                history.push(envelope_of(&message));
            }
            None => quiet += POLL,
        }
        if reached_at.is_none()
            && ends
                .iter()
                .all(|(p, &end)| next.get(p).copied().unwrap_or(0) >= end)
        {
            reached_at = Some(Instant::now());
        }
        match reached_at {
            Some(at) if quiet >= QUIET || at.elapsed() >= AFTER_END => return Ok(history),
            None if quiet >= TIMEOUT * 3 => {
                return Err(BusError::Unavailable(format!(
                    "Kafka: topic {topic} stopped delivering before its end"
                )));
            }
            _ => {}
        }
    }
}

/// Where each partition of a batch stands after its handler ran.
#[derive(Default)]
struct Progress {
    /// Next offset to commit per partition: past everything applied, skipped or parked.
    commit: HashMap<i32, i64>,
    /// First offset to read again per partition: the first message not done.
    rewind: HashMap<i32, i64>,
}

impl KafkaBus {
    /// Delivers until `shutdown` (Ok) or until the consumer fails (Err).
    async fn consume(
        &self,
        subscription: &Subscription,
        handler: &dyn Handler,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let group = subscription.group.as_str();
        metrics::subscribed(subscription);
        let topic = self.topic();
        self.declare(subscription).await?;
        let producer = self.producer().await?;
        let dead_letter = self.dead_letter_topic(group);
        let consumer = self.consumer(group)?;
        consumer.subscribe(&[&topic])?;
        let wanted: HashSet<&str> = subscription.events.iter().copied().collect();
        let mut attempts = crate::remote::Attempts::default();
        let mut failures = 0u32;
        loop {
            let first = tokio::select! {
                next = consumer.recv() => next?,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let mut messages = vec![first];
            while messages.len() < BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => messages.push(message),
                    _ => break,
                }
            }
            // Messages of events this group does not want are passed over (but committed).
            let envelopes: Vec<Envelope> = messages.iter().map(envelope_of).collect();
            let handed: Vec<usize> = (0..envelopes.len())
                .filter(|&i| {
                    envelopes[i].name.is_empty() || wanted.contains(envelopes[i].name.as_str())
                })
                .collect();
            let batch: Vec<Envelope> = handed.iter().map(|&i| envelopes[i].clone()).collect();
            metrics::unapplied(group, &batch);
            let outcomes = if batch.is_empty() {
                Vec::new()
            } else {
                match handler.handle(&batch).await {
                    Ok(outcomes) => {
                        failures = 0;
                        outcomes
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(group, %error, "consumer cannot apply events; will retry");
                        Vec::new()
                    }
                }
            };
            // Whether each message, in the order received, is finished with (applied, passed
            // over or parked) and may be committed.
            let mut done = vec![true; messages.len()];
            let mut retry = false;
            for (n, &i) in handed.iter().enumerate() {
                let envelope = &envelopes[i];
                // Messages after the handled prefix were not tried: they come again without
                // counting as attempts, or one stuck behind a retry would be parked untried.
                let outcome = match outcomes.get(n) {
                    Some(outcome) => {
                        let outcome = attempts.settle(&envelope.id, outcome.clone());
                        record_outcome(group, &envelope.name, &outcome);
                        outcome
                    }
                    None => Outcome::Retry("not handled".into()),
                };
                match outcome {
                    Outcome::Applied | Outcome::Duplicate => {}
                    Outcome::Poison(error) => {
                        tracing::error!(group, id = %envelope.id, name = %envelope.name, %error, "dead-lettering a message that cannot be applied");
                        let parked = self
                            .send(
                                &producer,
                                &dead_letter,
                                std::slice::from_ref(envelope),
                                Some(&error),
                            )
                            .await;
                        if parked.is_ok() {
                            metrics::dead_lettered(group, &envelope.name);
                        } else {
                            done[i] = false;
                            retry = true;
                        }
                    }
                    Outcome::Retry(_) => {
                        done[i] = false;
                        retry = true;
                    }
                }
            }
            metrics::unapplied(
                group,
                handed.iter().filter(|&&i| !done[i]).map(|&i| &envelopes[i]),
            );
            let progress = progress(&messages, &done);
            if !progress.commit.is_empty() {
                let mut offsets = TopicPartitionList::new();
                for (&partition, &offset) in &progress.commit {
                    offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
                }
                consumer.commit(&offsets, CommitMode::Async)?;
            }
            for (&partition, &offset) in &progress.rewind {
                consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(5),
                )?;
            }
            drop(messages);
            if retry {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures.max(1))) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}

/// Everything before the first message not done counts as done; from it on, every partition is
/// read again from its first message in that tail, so no later message overtakes an earlier one.
fn progress(messages: &[BorrowedMessage<'_>], done: &[bool]) -> Progress {
    let mut progress = Progress::default();
    let first_not_done = done.iter().position(|d| !d).unwrap_or(done.len());
    for (i, message) in messages.iter().enumerate() {
        let partition = message.partition();
        if i < first_not_done {
            progress.commit.insert(partition, message.offset() + 1);
        } else {
            progress.rewind.entry(partition).or_insert(message.offset());
        }
    }
    progress
}
