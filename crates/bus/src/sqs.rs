//! Amazon SQS, with SNS for fan-out, in the SPEC §4 wire format: body = the event's JSON, message
//! attribute `event_name` (String) = its name, plus `message_id`, `entity_key`, `occurred_at`
//! (RFC 3339) and `traceparent` so that an [`Envelope`] arrives whole.
//!
//! Publishers send every event to one SNS topic, `<namespace>events.fifo`, and need not know who
//! consumes: each consuming group has its own queue, `<namespace><group>.fifo`, subscribed to the
//! topic with raw delivery and a filter policy on `event_name` listing the events it wants, so
//! every group gets every event it wants and publishing is one call per ten events.
//!
//! Topic and queues are FIFO because one entity's events must be applied in order: the message
//! group is the entity's key and the de-duplication id the event's id, so SNS also drops an event
//! the relay publishes twice within five minutes. (SQS orders only within a message group; across
//! entities, order is kept only as far as the broker happens to keep it, as moto does.)
//!
//! A message is deleted only after it was applied. One to retry is released again after a
//! backoff; one that can never be applied, or that kept failing [`MAX_ATTEMPTS`] times, is copied
//! to `<namespace><group>-dead-letter.fifo` with an `error` attribute saying why, then deleted.
//! SQS's own redrive policy moves to the same queue a message that keeps crashing its consumer.
//!
//! Nothing connects before first use, so a service starts while its broker is down; both sides
//! recover from errors by themselves: the publisher creates the topic again on its next publish
//! (the relay keeps what was committed meanwhile), the consumer declares its queue again and goes
//! on with a backoff. AWS keeps topics, queues and subscriptions; a test server that forgets
//! them when it restarts (moto) drops what is published after the topic is created again and
//! before each group's consumer has subscribed its queue again.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`);
//! the SDK's other credential sources (profiles, instance roles) are not consulted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use chrono::{DateTime, Utc};
use contracts::Envelope;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::{self, credentials, describe, timeouts};
use crate::metrics::{self, CONSUMER_LAG, record_outcome};
use crate::relay::backoff;
use crate::{Bus, BusError, Handler, Outcome, Subscription};

pub use crate::MAX_ATTEMPTS;
/// After this many receives SQS itself moves a message to the dead-letter queue: a safety net for
/// one that crashes its consumer before it can be parked with a reason.
const MAX_RECEIVES: u32 = MAX_ATTEMPTS + 5;
/// How long a received message stays hidden from other consumers. Messages to retry, and those a
/// consumer holds when it shuts down, are released at once, so this only matters when a consumer
/// dies with messages in hand: they come again after this long.
const VISIBILITY_TIMEOUT_SECONDS: u32 = 30;
/// How long a long poll waits for messages unless told otherwise (SQS allows at most 20 s).
const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// On shutdown, how long to let a receive in flight finish, so that messages it is returning just
/// then can be released instead of staying hidden for the visibility timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How often a consumer asks how many messages wait in its queue (at most once per receive).
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Most messages per SNS publish, SQS receive, delete or visibility change.
const BATCH: usize = 10;
/// Most bytes per SNS publish call, all messages and attributes together.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most message attributes per message on SQS.
const MAX_ATTRIBUTES: usize = 10;

const EVENT_NAME: &str = "event_name";
const MESSAGE_ID: &str = "message_id";
const KEY: &str = "entity_key";
const OCCURRED_AT: &str = "occurred_at";
const TRACE: &str = "traceparent";
const ERROR: &str = "error";

#[derive(Clone)]
pub struct SqsBus {
    inner: Arc<Inner>,
    /// How long one receive waits for messages (long polling).
    wait: Duration,
}

struct Inner {
    /// Prefixed to the topic and queue names; empty in production, unique per test run.
    namespace: String,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    /// The topic's ARN once created; forgotten after a failed publish, so that the next one
    /// creates the topic again if the broker lost it.
    topic: Mutex<Option<String>>,
}

/// A consuming group's queues.
struct Queues {
    url: String,
    dead: String,
}

impl SqsBus {
    /// A bus on the broker at `url`: `sqs://HOST:PORT` for an endpoint of one's own over HTTP
    /// (moto, LocalStack), `sqs://` or `sqs://aws` for AWS's own endpoints; optionally
    /// `?region=eu-west-1` (default: `AWS_REGION`, else `us-east-1`). Nothing is connected yet: a
    /// service starts even when its broker is not up.
    pub fn new(url: &str) -> Result<Self, BusError> {
        Self::with_namespace(url, "")
    }

    pub fn with_namespace(url: &str, namespace: &str) -> Result<Self, BusError> {
        let (endpoint, region) = parse_url(url)
            .map_err(|e| BusError::Unavailable(format!("invalid SQS URL {url:?}: {e}")))?;
        let credentials = credentials(endpoint.is_some())
            .map_err(|e| BusError::Unavailable(format!("SQS URL {url:?}: {e}")))?;
        let http = aws::https_client();
        Ok(Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                sns: sns_client(&endpoint, &region, &credentials, &http),
                sqs: sqs_client(&endpoint, &region, &credentials, &http),
                topic: Mutex::new(None),
            }),
            wait: DEFAULT_WAIT,
        })
    }

    /// How long one receive waits for messages before asking again (at most 20 s, the default).
    /// A consumer stops within half a second either way, but a long poll it abandons may still
    /// take a message that arrives meanwhile, which then stays hidden for the visibility timeout
    /// (30 s, order kept): tests, which restart consumers often, use a short wait.
    pub fn with_wait_time(mut self, wait: Duration) -> Self {
        self.wait = wait.min(DEFAULT_WAIT);
        self
    }

    fn topic_name(&self) -> String {
        format!("{}events.fifo", self.inner.namespace)
    }

    fn queue_name(&self, group: &str) -> String {
        format!("{}{group}.fifo", self.inner.namespace)
    }

    fn dead_letter_name(&self, group: &str) -> String {
        format!("{}{group}-dead-letter.fifo", self.inner.namespace)
    }

    async fn create_topic(&self) -> Result<String, String> {
        let created = self
            .inner
            .sns
            .create_topic()
            .name(self.topic_name())
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false")
            .send()
            .await
            .map_err(|e| format!("creating the SNS topic: {}", describe(&e)))?;
        created
            .topic_arn()
            .map(str::to_owned)
            .ok_or_else(|| "SNS created the topic but returned no ARN".to_owned())
    }

    /// Creates a FIFO queue, or finds it if it exists, and returns its URL. Only `FifoQueue` is
    /// given here: SQS refuses to "create" an existing queue with other attribute values, so the
    /// changeable ones are set afterwards.
    async fn create_queue(&self, name: &str) -> Result<String, String> {
        let created = self
            .inner
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .map_err(|e| format!("creating queue {name}: {}", describe(&e)))?;
        created
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| format!("SQS created queue {name} but returned no URL"))
    }

    /// Messages waiting in the queue at `url` (SQS's approximate count; those received and
    /// not yet deleted are not counted).
    async fn waiting(&self, url: &str) -> Result<i64, String> {
        let count = self
            .queue_attribute(url, QueueAttributeName::ApproximateNumberOfMessages)
            .await?;
        count
            .parse()
            .map_err(|e| format!("SQS counted {count:?} messages in {url}: {e}"))
    }

    async fn queue_arn(&self, url: &str) -> Result<String, String> {
        self.queue_attribute(url, QueueAttributeName::QueueArn)
            .await
    }

    async fn queue_attribute(&self, url: &str, name: QueueAttributeName) -> Result<String, String> {
        let attributes = self
            .inner
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| format!("reading {name} of {url}: {}", describe(&e)))?;
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .ok_or_else(|| format!("SQS returned no {name} for {url}"))
    }

    /// Creates (or updates) the topic, `subscription`'s queue and dead-letter queue, and the
    /// queue's subscription to the topic. Idempotent.
    async fn declare_queues(&self, subscription: &Subscription) -> Result<Queues, String> {
        let topic = self.create_topic().await?;
        let dead = self
            .create_queue(&self.dead_letter_name(&subscription.group))
            .await?;
        let dead_arn = self.queue_arn(&dead).await?;
        let url = self
            .create_queue(&self.queue_name(&subscription.group))
            .await?;
        let arn = self.queue_arn(&url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_arn,
            "maxReceiveCount": MAX_RECEIVES,
        });
        // On AWS, SNS may deliver to the queue only if the queue's policy lets the topic send.
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "sns.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": topic } },
            }],
        });
        self.inner
            .sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                VISIBILITY_TIMEOUT_SECONDS.to_string(),
            )
            .send()
            .await
            .map_err(|e| format!("configuring queue {url}: {}", describe(&e)))?;
        if !subscription.events.is_empty() {
            self.subscribe_queue(&topic, &arn, &subscription.events)
                .await?;
        }
        Ok(Queues { url, dead })
    }

    /// Subscribes the queue `queue_arn` to `topic` with raw delivery and a filter on `events`.
    /// SNS refuses a second Subscribe with different attributes (the group now wants other
    /// events), so an existing subscription is updated instead.
    async fn subscribe_queue(
        &self,
        topic: &str,
        queue_arn: &str,
        events: &[&'static str],
    ) -> Result<(), String> {
        let sns = &self.inner.sns;
        let filter = serde_json::json!({ EVENT_NAME: events }).to_string();
        let mut next_token = None;
        loop {
            let page = sns
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| format!("listing subscriptions: {}", describe(&e)))?;
            let existing = page.subscriptions().iter().find_map(|s| {
                let arn = s.subscription_arn()?;
                (s.protocol() == Some("sqs")
                    && s.endpoint() == Some(queue_arn)
                    && arn.starts_with("arn:"))
                .then_some(arn)
            });
            if let Some(subscription) = existing {
                for (name, value) in [("RawMessageDelivery", "true"), ("FilterPolicy", &filter)] {
                    sns.set_subscription_attributes()
                        .subscription_arn(subscription)
                        .attribute_name(name)
                        .attribute_value(value)
                        .send()
                        .await
                        .map_err(|e| format!("updating subscription {name}: {}", describe(&e)))?;
                }
                return Ok(());
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        sns.subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", filter)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| format!("subscribing {queue_arn}: {}", describe(&e)))?;
        Ok(())
    }

    /// Publishes `batch` in order, ten (or fewer, to stay under SNS's size limit) per call.
    async fn publish_to(&self, topic: &str, batch: &[Envelope]) -> Result<(), String> {
        let mut rest = batch;
        while !rest.is_empty() {
            let count = chunk_len(rest);
            let (chunk, later) = rest.split_at(count);
            rest = later;
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, envelope)| publish_entry(i, envelope))
                .collect::<Result<Vec<_>, _>>()?;
            let published = self
                .inner
                .sns
                .publish_batch()
                .topic_arn(topic)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("publishing to SNS: {}", describe(&e)))?;
            // What was taken before the refused one is de-duplicated by SNS when the relay
            // publishes the batch again.
            if let Some(failed) = published.failed().first() {
                return Err(format!(
                    "SNS refused a message: {} {}",
                    failed.code(),
                    failed.message().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }
}

/// The endpoint (None: AWS's own) and region `url` names.
fn parse_url(url: &str) -> Result<(Option<String>, String), String> {
    let rest = url
        .strip_prefix("sqs://")
        .ok_or("expected sqs://HOST:PORT, or sqs://aws for AWS")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '@']) {
        return Err("expected no path and no user name: sqs://HOST:PORT".into());
    }
    let endpoint = match authority {
        "" | "aws" => None,
        host => Some(format!("http://{host}")),
    };
    let mut region = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("region", value)) if !value.is_empty() => region = Some(value.to_owned()),
            _ => {
                return Err(format!(
                    "unknown parameter {pair:?} (only region=… is known)"
                ));
            }
        }
    }
    Ok((endpoint, aws::region(region)))
}

fn sns_client(
    endpoint: &Option<String>,
    region: &str,
    credentials: &Credentials,
    http: &SharedHttpClient,
) -> aws_sdk_sns::Client {
    let mut config = aws_sdk_sns::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials.clone())
        .http_client(http.clone())
        .timeout_config(timeouts(Duration::from_secs(10)));
    config.set_endpoint_url(endpoint.clone());
    aws_sdk_sns::Client::from_conf(config.build())
}

fn sqs_client(
    endpoint: &Option<String>,
    region: &str,
    credentials: &Credentials,
    http: &SharedHttpClient,
) -> aws_sdk_sqs::Client {
    let mut config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials.clone())
        .http_client(http.clone())
        // Long enough for the longest long poll.
        .timeout_config(timeouts(DEFAULT_WAIT + Duration::from_secs(10)));
    config.set_endpoint_url(endpoint.clone());
    aws_sdk_sqs::Client::from_conf(config.build())
}

/// The message attributes of `envelope`; SNS refuses empty values, so those are left out.
fn attributes_of(envelope: &Envelope) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        (EVENT_NAME, envelope.name.clone()),
        (MESSAGE_ID, envelope.id.clone()),
        (KEY, envelope.key.clone()),
        (OCCURRED_AT, envelope.occurred_at.to_rfc3339()),
    ];
    if let Some(trace) = &envelope.trace {
        attributes.push((TRACE, trace.clone()));
    }
    attributes.retain(|(_, value)| !value.is_empty());
    attributes
}

/// How many of `batch`'s first messages fit in one publish call (at least one: SNS says so
/// clearly when a single message is too big).
fn chunk_len(batch: &[Envelope]) -> usize {
    let mut bytes = 0;
    for (i, envelope) in batch.iter().take(BATCH).enumerate() {
        bytes += envelope.payload.len()
            + attributes_of(envelope)
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>();
        if bytes > MAX_BATCH_BYTES && i > 0 {
            return i;
        }
    }
    batch.len().min(BATCH)
}

/// `value` if SQS takes it as a message group or de-duplication id (1–128 printable ASCII
/// characters).
fn fifo_id(value: &str) -> Option<&str> {
    let valid =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(value)
}

fn publish_entry(
    index: usize,
    envelope: &Envelope,
) -> Result<aws_sdk_sns::types::PublishBatchRequestEntry, String> {
    // One entity's events form one message group, which SQS delivers in order.
    let group = fifo_id(&envelope.key)
        .or(fifo_id(&envelope.name))
        .unwrap_or("events")
        .to_owned();
    let deduplication = fifo_id(&envelope.id)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(&envelope.payload)
        .message_group_id(group)
        .message_deduplication_id(deduplication);
    for (name, value) in attributes_of(envelope) {
        let value = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| e.to_string())?;
        entry = entry.message_attributes(name, value);
    }
    entry.build().map_err(|e| e.to_string())
}

fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

fn system_attribute(message: &Message, name: MessageSystemAttributeName) -> Option<&str> {
    message.attributes()?.get(&name).map(String::as_str)
}

/// How many times SQS has handed out `message`, this time included.
fn receive_count(message: &Message) -> u32 {
    system_attribute(message, MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The envelope of a received message, or why it cannot be one. A message from a publisher that
/// set no message id (the reference's) gets one, so it is applied but cannot be recognised if
/// delivered again.
fn envelope_of(message: &Message) -> Result<Envelope, String> {
    let name = attribute(message, EVENT_NAME)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("no {EVENT_NAME} attribute"))?;
    let sent_at = || {
        system_attribute(message, MessageSystemAttributeName::SentTimestamp)
            .and_then(|millis| millis.parse().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis)
    };
    Ok(Envelope {
        id: attribute(message, MESSAGE_ID).unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        key: attribute(message, KEY)
            .or_else(|| {
                system_attribute(message, MessageSystemAttributeName::MessageGroupId)
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        occurred_at: attribute(message, OCCURRED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(sent_at)
            .unwrap_or_else(Utc::now),
        trace: attribute(message, TRACE),
        payload: message.body().unwrap_or_default().to_owned(),
        name,
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[async_trait]
impl Bus for SqsBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        // Held throughout, so that concurrent publishes do not interleave.
        let mut topic = self.inner.topic.lock().await;
        let arn = match topic.as_ref() {
            Some(arn) => arn.clone(),
            None => {
                let arn = self.create_topic().await.map_err(unavailable)?;
                *topic = Some(arn.clone());
                arn
            }
        };
        let result = self.publish_to(&arn, batch).await;
        if result.is_err() {
            // Create the topic again on the next publish; the relay publishes this batch again.
            *topic = None;
        }
        result.map_err(unavailable)
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), BusError> {
        self.declare_queues(subscription)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        crate::remote::keep_consuming(
            "SQS",
            self.clone(),
            subscription,
            handler,
            shutdown,
            |bus, subscription, handler, shutdown| async move {
                bus.consume(&subscription, handler.as_ref(), &shutdown)
                    .await
                    .map_err(anyhow::Error::msg)
            },
        )
    }

    async fn check(&self) -> Result<(), String> {
        self.inner
            .sqs
            .list_queues()
            .max_results(1)
            .send()
            .await
            .map_err(|e| format!("SQS: {}", describe(&e)))?;
        Ok(())
    }
}

fn unavailable(error: String) -> BusError {
    BusError::Unavailable(format!("SQS: {error}"))
}

impl SqsBus {
    /// Delivers until `shutdown` (Ok) or until the broker fails (Err).
    async fn consume(
        &self,
        subscription: &Subscription,
        handler: &dyn Handler,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let group = subscription.group.as_str();
        metrics::subscribed(subscription);
        // The queue may not exist yet, or no longer (a broker that lost its state).
        let queues = self.declare_queues(subscription).await?;
        let mut failures = 0u32;
        let mut lag_measured: Option<Instant> = None;
        loop {
            if lag_measured.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
                match self.waiting(&queues.url).await {
                    Ok(waiting) => CONSUMER_LAG.with_label_values(&[group]).set(waiting),
                    // The receive that follows says whether the queue is there at all.
                    Err(error) => tracing::debug!(group, %error, "cannot measure the lag"),
                }
                lag_measured = Some(Instant::now());
            }
            let Some(messages) = self.receive(&queues.url, shutdown).await? else {
                return Ok(());
            };
            let mut done = Vec::new();
            let mut held = Vec::new();
            let mut deliveries = Vec::with_capacity(messages.len());
            for message in messages {
                match envelope_of(&message) {
                    Ok(envelope) => deliveries.push((message, envelope)),
                    // No handler can apply a message that does not say what it is.
                    Err(error) => {
                        let outcome = Outcome::Poison(error.clone());
                        record_outcome(group, "unknown", &outcome);
                        tracing::error!(group, %error, "dead-lettering a message that is no event");
                        self.park(&queues.dead, &message, &error).await?;
                        metrics::dead_lettered(group, "unknown");
                        done.push(message);
                    }
                }
            }
            let envelopes: Vec<Envelope> = deliveries.iter().map(|(_, e)| e.clone()).collect();
            metrics::unapplied(group, &envelopes);
            let outcomes = if envelopes.is_empty() {
                Vec::new()
            } else {
                match handler.handle(&envelopes).await {
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
            let mut again = Vec::new();
            for (i, (message, envelope)) in deliveries.into_iter().enumerate() {
                // Messages after the handled prefix were not tried; they are held without
                // being judged, or one stuck behind a retry would be parked untried.
                let outcome = match outcomes.get(i).cloned() {
                    Some(Outcome::Retry(error)) if receive_count(&message) >= MAX_ATTEMPTS => {
                        Outcome::Poison(format!("kept failing: {error}"))
                    }
                    Some(outcome) => outcome,
                    None => Outcome::Retry("not handled".into()),
                };
                if i < outcomes.len() {
                    record_outcome(group, &envelope.name, &outcome);
                }
                match outcome {
                    Outcome::Applied | Outcome::Duplicate => done.push(message),
                    Outcome::Poison(error) => {
                        tracing::error!(group, id = %envelope.id, name = %envelope.name, %error, "dead-lettering a message that cannot be applied");
                        self.park(&queues.dead, &message, &error).await?;
                        metrics::dead_lettered(group, &envelope.name);
                        done.push(message);
                    }
                    Outcome::Retry(_) => {
                        held.push(message);
                        again.push(envelope);
                    }
                }
            }
            metrics::unapplied(group, &again);
            self.delete(&queues.url, &done).await?;
            if !held.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures.max(1))) => {}
                    _ = shutdown.cancelled() => {}
                }
                self.release(&queues.url, &held).await?;
            }
        }
    }

    /// The next messages (none after a long poll found nothing), or None once `shutdown` fired.
    async fn receive(
        &self,
        url: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Message>>, String> {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let request = self
            .inner
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(self.wait.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send();
        tokio::pin!(request);
        let received = tokio::select! {
            received = &mut request => received,
            _ = shutdown.cancelled() => {
                // Messages a receive returns just now would stay hidden for the visibility
                // timeout if it were dropped: let it finish briefly and give them back.
                if let Ok(Ok(received)) = tokio::time::timeout(SHUTDOWN_GRACE, &mut request).await {
                    self.release(url, received.messages()).await?;
                }
                return Ok(None);
            }
        };
        let received = received.map_err(|e| format!("receiving from {url}: {}", describe(&e)))?;
        Ok(Some(received.messages.unwrap_or_default()))
    }

    /// Copies `message` with the reason it cannot be applied to the dead-letter queue `dead`.
    async fn park(&self, dead: &str, message: &Message, error: &str) -> Result<(), String> {
        let mut attributes = message.message_attributes().cloned().unwrap_or_default();
        if attributes.len() >= MAX_ATTRIBUTES {
            // Room for the reason: keep ours, which describe the event.
            attributes.retain(|name, _| {
                [EVENT_NAME, MESSAGE_ID, KEY, OCCURRED_AT, TRACE].contains(&name.as_str())
            });
        }
        let reason = match truncated(error, 1024) {
            "" => "unknown",
            reason => reason,
        };
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| e.to_string())?;
        attributes.insert(ERROR.to_owned(), reason);
        // SQS refuses an empty body; a message without one is parked all the same.
        let body = message
            .body()
            .filter(|b| !b.is_empty())
            .unwrap_or("(empty)");
        let group = system_attribute(message, MessageSystemAttributeName::MessageGroupId)
            .and_then(fifo_id)
            .unwrap_or("dead-letter");
        // The broker's id of the message: parking it again (after a crash) is de-duplicated.
        let deduplication = message
            .message_id()
            .and_then(fifo_id)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        self.inner
            .sqs
            .send_message()
            .queue_url(dead)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .message_group_id(group)
            .message_deduplication_id(deduplication)
            .send()
            .await
            .map_err(|e| format!("dead-lettering to {dead}: {}", describe(&e)))?;
        Ok(())
    }

    /// Deletes `messages` (applied or parked) from the queue at `url`.
    async fn delete(&self, url: &str, messages: &[Message]) -> Result<(), String> {
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if entries.is_empty() {
            return Ok(());
        }
        let deleted = self
            .inner
            .sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("deleting from {url}: {}", describe(&e)))?;
        for failed in deleted.failed() {
            // It comes again, and the inbox recognises it.
            tracing::warn!(
                url,
                code = failed.code(),
                "SQS did not delete an applied message"
            );
        }
        Ok(())
    }

    /// Makes `messages` visible again at once, so that they are delivered again.
    async fn release(&self, url: &str, messages: &[Message]) -> Result<(), String> {
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if entries.is_empty() {
            return Ok(());
        }
        let changed = self
            .inner
            .sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("releasing messages of {url}: {}", describe(&e)))?;
        for failed in changed.failed() {
            // It comes again once its visibility timeout has passed.
            tracing::warn!(url, code = failed.code(), "SQS did not release a message");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_an_endpoint_or_aws() {
        let (endpoint, region) = parse_url("sqs://127.0.0.1:5000?region=eu-west-1").unwrap();
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(region, "eu-west-1");
        assert_eq!(parse_url("sqs://aws?region=eu-west-1").unwrap().0, None);
        assert_eq!(parse_url("sqs://").unwrap().0, None);
        assert!(parse_url("amqp://localhost").is_err());
        assert!(parse_url("sqs://host:1/path").is_err());
        assert!(parse_url("sqs://host:1?colour=blue").is_err());
    }

    #[test]
    fn an_envelope_round_trips_through_attributes() {
        let mut envelope = crate::conformance::cancelled("e1");
        envelope.trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let mut message = Message::builder().body(&envelope.payload);
        for (name, value) in attributes_of(&envelope) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .unwrap();
            message = message.message_attributes(name, value);
        }
        assert_eq!(envelope_of(&message.build()).unwrap(), envelope);
    }

    #[test]
    fn a_message_without_an_event_name_is_no_envelope() {
        let message = Message::builder().body("{}").build();
        assert!(envelope_of(&message).is_err());
    }
}
