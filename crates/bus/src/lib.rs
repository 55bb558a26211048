//! The message bus between MyEvents services.
//!
//! A service never publishes directly: it appends events to its outbox in the transaction of the
//! state change, and the [`relay`] moves them to a [`Bus`]. A consumer receives batches through
//! [`Bus::subscribe`] and applies them with a [`Handler`] that records each message id in its
//! inbox, so delivery is at least once and application is exactly once.
//!
//! Backends sit side by side behind the same trait and conformance suite: [`embedded`] (a
//! durable log in a SQLite file, the default, always built), and RabbitMQ, Kafka and SQS, each
//! built only with its cargo feature (`rabbitmq`, `kafka`, `sqs`).

#[cfg(feature = "rabbitmq")]
pub mod amqp;
#[cfg(feature = "aws")]
pub mod aws;
pub mod conformance;
pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
mod metrics;
pub mod relay;
#[cfg(any(feature = "rabbitmq", feature = "kafka", feature = "sqs"))]
mod remote;
#[cfg(feature = "sqs")]
pub mod sqs;
pub mod unit;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use relay::{Backlog, Outbox, SqliteOutbox, backoff, spawn_relay};
pub use unit::{Unit, apply_once, run_now};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker cannot do this at all (RabbitMQ and SQS keep no history to replay).
    #[error("{0}")]
    Unsupported(String),
}

/// What a consumer made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now; acknowledge.
    Applied,
    /// Already applied earlier (the inbox knew its id); acknowledge, change nothing.
    Duplicate,
    /// Cannot be applied yet (for example it names an entity not seen yet); deliver again later,
    /// and park it once it has failed too often.
    Retry(String),
    /// Can never be applied (malformed, unknown name); park it in the dead letters and go on.
    Poison(String),
}

/// Applies delivered messages to a service's state.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `batch` in order and returns one outcome per message for a prefix of it.
    /// Processing stops at the first `Retry`: messages after the returned prefix were not
    /// touched and are delivered again, so one entity's events are never applied out of order.
    /// An `Err` (storage down) means nothing was applied; the whole batch comes again.
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<Outcome>>;
}

/// Which events a consumer group wants. Each group gets every event once (fan-out between
/// groups, at-least-once within one).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub group: String,
    pub events: Vec<&'static str>,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes `batch` in order and returns once the broker holds it durably.
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError>;

    /// Creates what the broker needs to keep `subscription`'s events while no consumer runs
    /// (RabbitMQ: its durable queue and bindings). Subscribing does it too; calling it first
    /// makes sure nothing published from now on is missed.
    async fn declare(&self, _subscription: &Subscription) -> Result<(), BusError> {
        Ok(())
    }

    /// Starts delivering `subscription`'s events to `handler` until `shutdown` fires.
    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()>;

    /// Why the bus cannot be used right now, if it cannot.
    async fn check(&self) -> Result<(), String>;

    /// Every message the broker holds, from the start of its history to its end at the time
    /// of the call, each entity's in order; what `myevents replay` rebuilds a service from.
    /// Brokers that forget a message once it is delivered (RabbitMQ, SQS) keep no history.
    async fn history(&self) -> Result<Vec<Envelope>, BusError> {
        Err(BusError::Unsupported(
            "this broker keeps no history to replay: a replay needs Kafka or the embedded log"
                .into(),
        ))
    }
}

/// A message that asks to be retried this many times in a row is parked as poison.
pub const MAX_ATTEMPTS: u32 = 20;

/// Decodes `batch` and hands the well-formed prefix to `apply`, which returns one outcome per
/// event it was given (or a prefix ending in `Retry`). A message that cannot be decoded ends the
/// prefix and is reported as `Poison`; what follows it is delivered again by the next batch.
///
/// Each message that carries a trace is applied in a span of its own, child of the producer's
/// publish span and lasting as long as the batch's apply: a booking's trace then shows every
/// service that applied it. `apply` also gets, per message, the `traceparent` of that span (or
/// `None`), for what the apply causes in turn (a mail to send).
pub async fn apply_decoded<F, Fut>(batch: &[Envelope], apply: F) -> anyhow::Result<Vec<Outcome>>
where
    F: FnOnce(Vec<(String, DomainEvent)>, Vec<Option<String>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Outcome>>>,
{
    let mut decoded = Vec::with_capacity(batch.len());
    let mut poison = None;
    for envelope in batch {
        match envelope.decode() {
            Ok(event) => decoded.push((envelope.id.clone(), event)),
            Err(error) => {
                poison = Some(error.to_string());
                break;
            }
        }
    }
    let count = decoded.len();
    let spans: Vec<Option<tracing::Span>> = batch[..count]
        .iter()
        .map(|envelope| {
            envelope.trace.as_deref().map(|trace| {
                platform::telemetry::message_span(
                    &format!("apply {}", envelope.name),
                    "consumer",
                    &envelope.id,
                    trace,
                )
            })
        })
        .collect();
    let traces = spans
        .iter()
        .map(|span| span.as_ref().and_then(platform::telemetry::traceparent_of))
        .collect();
    let mut outcomes = if decoded.is_empty() {
        Vec::new()
    } else {
        apply(decoded, traces).await?
    };
    drop(spans);
    if let Some(error) = poison
        && outcomes.len() == count
    {
        outcomes.push(Outcome::Poison(error));
    }
    Ok(outcomes)
}
