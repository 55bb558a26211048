//! RabbitMQ (AMQP 0-9-1) with the reference's wire format (SPEC §4): a durable topic exchange
//! `events`, routing key = event name, header `x-event-name`, JSON body; one durable queue per
//! consuming service; publisher confirms; a message is acknowledged only after it was applied;
//! one that can never be applied is dead-lettered to `<queue>.dead-letter`, not dropped.
//!
//! Both sides reconnect with backoff when the broker goes away: the publisher on its next
//! publish (the outbox keeps what was committed meanwhile), the consumer in its loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, CONSUMER_LAG, record_outcome};
use crate::relay::backoff;
use crate::{Bus, BusError, Handler, Outcome, Subscription};

const PREFETCH: u16 = 256;
/// How often a consumer asks how many messages wait in its queue.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// How long a readiness check waits for a connection to the broker.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
const EVENT_NAME_HEADER: &str = "x-event-name";
const KEY_HEADER: &str = "x-entity-key";
const TRACE_HEADER: &str = "traceparent";

#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// Prefixed to the exchange and queue names; empty in production, unique per test run.
    namespace: String,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBus {
    /// A bus on the broker at `url` (`amqp://user:pass@host:5672/vhost`). Nothing is connected
    /// yet: a service starts even when its broker is not up.
    pub fn new(url: &str) -> Self {
        Self::with_namespace(url, "")
    }

    pub fn with_namespace(url: &str, namespace: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: with_default_heartbeat(url),
                namespace: namespace.to_owned(),
                publisher: Mutex::new(None),
            }),
        }
    }

    fn exchange(&self) -> String {
        format!("{}events", self.inner.namespace)
    }

    fn queue(&self, group: &str) -> String {
        format!("{}{group}", self.inner.namespace)
    }

    async fn connect(&self) -> Result<(Connection, Channel), lapin::Error> {
        let connection =
            Connection::connect(&self.inner.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                &self.exchange(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((connection, channel))
    }

    /// Declares `group`'s durable queue, bound to every event it wants, and its dead-letter queue.
    async fn declare_queue(
        &self,
        channel: &Channel,
        subscription: &Subscription,
    ) -> Result<String, lapin::Error> {
        let queue = self.queue(&subscription.group);
        let dead = format!("{queue}.dead-letter");
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut dead_arguments = FieldTable::default();
        let mut arguments = FieldTable::default();
        if !self.inner.namespace.is_empty() {
            // A namespaced bus is a test's: its queues go away a minute after their last use.
            for args in [&mut dead_arguments, &mut arguments] {
                args.insert("x-expires".into(), AMQPValue::LongUInt(60_000));
            }
        }
        channel
            .queue_declare(&dead, durable, dead_arguments)
            .await?;
        // Rejected without requeue → routed by the default exchange to the dead-letter queue.
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead.as_str().into()),
        );
        // Replicas of a service consume one queue; RabbitMQ delivers it to one of them at a time
        // and hands it to another when that one goes, so each entity's events are applied in the
        // order they were published (competing consumers would apply a booking's cancellation
        // beside its creation).
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        channel.queue_declare(&queue, durable, arguments).await?;
        for name in &subscription.events {
            channel
                .queue_bind(
                    &queue,
                    &self.exchange(),
                    name,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(queue)
    }

    async fn publish_on(&self, channel: &Channel, batch: &[Envelope]) -> Result<(), lapin::Error> {
        let mut confirms = Vec::with_capacity(batch.len());
        for envelope in batch {
            let confirm = channel
                .basic_publish(
                    &self.exchange(),
                    &envelope.name,
                    BasicPublishOptions::default(),
                    envelope.payload.as_bytes(),
                    properties(envelope),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            if confirm.await?.is_nack() {
                return Err(lapin::Error::InvalidChannelState(
                    lapin::ChannelState::Error,
                ));
            }
        }
        Ok(())
    }
}

fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        EVENT_NAME_HEADER.into(),
        AMQPValue::LongString(envelope.name.as_str().into()),
    );
    headers.insert(
        KEY_HEADER.into(),
        AMQPValue::LongString(envelope.key.as_str().into()),
    );
    if let Some(trace) = &envelope.trace {
        headers.insert(
            TRACE_HEADER.into(),
            AMQPValue::LongString(trace.as_str().into()),
        );
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(envelope.id.as_str().into())
        .with_timestamp(envelope.occurred_at.timestamp().max(0) as u64)
        .with_headers(headers)
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The envelope of a delivery.
fn envelope_of(delivery: &lapin::message::Delivery) -> Envelope {
    let p = &delivery.properties;
    let name =
        header(p, EVENT_NAME_HEADER).unwrap_or_else(|| delivery.routing_key.as_str().to_owned());
    Envelope {
        id: p
            .message_id()
            .as_ref()
            .map(ShortString::to_string)
            .unwrap_or_else(|| content_id(&name, &delivery.data)),
        key: header(p, KEY_HEADER).unwrap_or_default(),
        occurred_at: p
            .timestamp()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t as i64, 0))
            .unwrap_or_else(Utc::now),
        trace: header(p, TRACE_HEADER),
        payload: String::from_utf8_lossy(&delivery.data).into_owned(),
        name,
    }
}

/// The message id of a message whose publisher set none (the reference's Go services set only
/// `x-event-name`): made from its name and body, so that a redelivery has the same id and the
/// inbox applies it once. Two messages with the same name and body count as one fact; the
/// reference's `locationCreated`, `eventCreated` and `eventCancelled` each carry the id of their
/// entity, so two different facts never look alike.
fn content_id(name: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(body)
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("content-{hex}")
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        let mut publisher = self.inner.publisher.lock().await;
        if publisher.is_none() {
            let (connection, channel) = self.connect().await.map_err(unavailable)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(unavailable)?;
            *publisher = Some((connection, channel));
        }
        let Some((_, channel)) = publisher.as_ref() else {
            return Err(BusError::Unavailable("no channel".into()));
        };
        let result = self.publish_on(channel, batch).await;
        if result.is_err() {
            // Reconnect on the next publish; the relay publishes this batch again.
            *publisher = None;
        }
        result.map_err(unavailable)
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), BusError> {
        let (connection, channel) = self.connect().await.map_err(unavailable)?;
        let declared = self.declare_queue(&channel, subscription).await;
        let _ = connection.close(200, "declared").await;
        declared.map(|_| ()).map_err(unavailable)
    }

    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        crate::remote::keep_consuming(
            "RabbitMQ",
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
        let connected = self
            .inner
            .publisher
            .lock()
            .await
            .as_ref()
            .is_some_and(|(c, _)| c.status().connected());
        if connected {
            return Ok(());
        }
        // A broker cut off by the network stays silent: say so in bounded time.
        let connect = Connection::connect(&self.inner.url, ConnectionProperties::default());
        match tokio::time::timeout(CHECK_TIMEOUT, connect).await {
            Ok(Ok(connection)) => {
                let _ = connection.close(200, "readiness check").await;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("RabbitMQ: {e}")),
            Err(_) => Err(format!(
                "RabbitMQ: no answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

/// How often each side of a connection shows it is alive unless the URL says (`?heartbeat=`).
/// RabbitMQ proposes 60 s; a broker cut off by the network is then noticed, and a cut-off
/// consumer's unacknowledged messages handed to another, only after two minutes. Both sides give
/// up after two missed heartbeats: here 20 s.
const HEARTBEAT_SECS: u16 = 10;

/// `url` with `heartbeat=HEARTBEAT_SECS` added to its query, unless it names a heartbeat.
fn with_default_heartbeat(url: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if query.split('&').any(|pair| pair.starts_with("heartbeat=")) {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}heartbeat={HEARTBEAT_SECS}")
}

fn unavailable(e: lapin::Error) -> BusError {
    BusError::Unavailable(format!("RabbitMQ: {e}"))
}

impl AmqpBus {
    /// Delivers until `shutdown` (Ok) or until the connection fails (Err).
    async fn consume(
        &self,
        subscription: &Subscription,
        handler: &dyn Handler,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let group = subscription.group.as_str();
        metrics::subscribed(subscription);
        let (connection, channel) = self.connect().await?;
        let queue = self.declare_queue(&channel, subscription).await?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        // Before consuming: what waits then is all ready, none in the consumer's hands yet.
        measure_lag(&channel, &queue, group).await?;
        let mut consumer = channel
            .basic_consume(
                &queue,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut attempts = crate::remote::Attempts::default();
        let mut failures = 0u32;
        let mut lag_measured = Instant::now();
        loop {
            if lag_measured.elapsed() >= LAG_EVERY {
                measure_lag(&channel, &queue, group).await?;
                lag_measured = Instant::now();
            }
            let first = tokio::select! {
                next = consumer.next() => next,
                _ = tokio::time::sleep(LAG_EVERY) => continue,
                _ = shutdown.cancelled() => {
                    // Unacknowledged deliveries go back to the queue when the channel closes.
                    let _ = connection.close(200, "shutting down").await;
                    return Ok(());
                }
            };
            let Some(first) = first else {
                anyhow::bail!("the broker ended the consumer");
            };
            let mut deliveries = vec![first?];
            while deliveries.len() < PREFETCH as usize {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(delivery))) => deliveries.push(delivery),
                    _ => break,
                }
            }
            let envelopes: Vec<Envelope> = deliveries.iter().map(envelope_of).collect();
            metrics::unapplied(group, &envelopes);
            let outcomes = match handler.handle(&envelopes).await {
                Ok(outcomes) => {
                    failures = 0;
                    outcomes
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(group, %error, "consumer cannot apply events; will retry");
                    Vec::new()
                }
            };
            let mut retry = false;
            let mut again = Vec::new();
            for (i, (delivery, envelope)) in deliveries.iter().zip(&envelopes).enumerate() {
                let outcome = outcomes
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| Outcome::Retry("not handled".into()));
                let outcome = attempts.settle(&envelope.id, outcome);
                if i < outcomes.len() {
                    record_outcome(group, &envelope.name, &outcome);
                }
                match outcome {
                    Outcome::Applied | Outcome::Duplicate => {
                        delivery.acker.ack(BasicAckOptions::default()).await?;
                    }
                    Outcome::Poison(error) => {
                        tracing::error!(group, id = %envelope.id, name = %envelope.name, %error, "dead-lettering a message that cannot be applied");
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: false,
                                ..Default::default()
                            })
                            .await?;
                        metrics::dead_lettered(group, &envelope.name);
                    }
                    Outcome::Retry(_) => {
                        retry = true;
                        again.push(envelope);
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await?;
                    }
                }
            }
            metrics::unapplied(group, again);
            if retry {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures.max(1))) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Sets `group`'s lag to the messages ready in its queue. RabbitMQ does not count those
/// delivered to a consumer and not yet acknowledged (up to [`PREFETCH`]), so a consumer that
/// keeps failing holds them and shows little lag: its oldest unapplied age shows it.
async fn measure_lag(channel: &Channel, queue: &str, group: &str) -> Result<(), lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let waiting = channel
        .queue_declare(queue, passive, FieldTable::default())
        .await?;
    CONSUMER_LAG
        .with_label_values(&[group])
        .set(i64::from(waiting.message_count()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{content_id, with_default_heartbeat};

    #[test]
    fn a_heartbeat_is_added_unless_the_url_names_one() {
        assert_eq!(
            with_default_heartbeat("amqp://guest:guest@h:5672/%2f"),
            "amqp://guest:guest@h:5672/%2f?heartbeat=10"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192&heartbeat=10"
        );
        assert_eq!(
            with_default_heartbeat("amqp://h/%2f?frame_max=8192&heartbeat=3"),
            "amqp://h/%2f?frame_max=8192&heartbeat=3"
        );
    }

    #[test]
    fn a_message_without_id_is_named_by_its_content() {
        let body = br#"{"id":"5f1e7c9a2b3c4d5e6f708192"}"#;
        assert_eq!(
            content_id("eventCreated", body),
            content_id("eventCreated", body)
        );
        assert_ne!(
            content_id("eventCreated", body),
            content_id("eventCancelled", body)
        );
        assert_ne!(
            content_id("eventCreated", body),
            content_id("eventCreated", br#"{"id":"5f1e7c9a2b3c4d5e6f708193"}"#)
        );
    }
}
