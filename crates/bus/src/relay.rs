//! The outbox relay: publishes what a service committed to its outbox, in commit order, and
//! forgets it only once the broker holds it. A crash between the two publishes again; consumers'
//! inboxes make that harmless (at least once, never never).
//!
//! The relay remembers how far it has published in memory and deletes published rows in bulk
//! (every few thousand events or every second): a delete per batch would cost the service's
//! writer a second commit for every commit it makes. After a crash, what was published but not
//! yet deleted goes out once more.
//!
//! Replicas of a service share one outbox when it is in PostgreSQL. One relay at a time holds it
//! ([`Outbox::hold`]) and publishes; the others stand by and take over when the holder goes, so
//! each event goes out once, in commit order, however many replicas run. A takeover publishes
//! again what the former holder published and had not deleted yet, which inboxes drop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use sqlite::Db;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Bus;
use crate::metrics::{OUTBOX_BACKLOG, OUTBOX_OLDEST, PUBLISH_DURATION, PUBLISHED, RELAY_HOLDS};

const BATCH: usize = 512;
/// After a round that published something, how long events may gather before the next one.
pub(crate) const GATHER: Duration = Duration::from_millis(2);
/// A commit wakes the relay at once; this catches writes from another process (`admin create`).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// A service's outbox, whatever stores it.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// The oldest events after `position`, with their positions, in commit order.
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>>;
    /// Forgets everything up to and including `position`.
    async fn mark_published(&self, position: i64) -> anyhow::Result<()>;
    /// What waits after `position`.
    async fn backlog(&self, after: i64) -> anyhow::Result<Backlog>;
    /// Notified after the store commits, so the relay need not poll.
    fn wakeup(&self) -> Arc<Notify>;
    /// Whether this process's relay holds the outbox now and may publish it: asked before each
    /// round. An outbox that only one process writes (SQLite's, locked by its file) is always
    /// held; MongoDB's and DynamoDB's are published by every replica's relay (each event then
    /// goes out once per replica, and inboxes drop the copies).
    async fn hold(&self) -> anyhow::Result<bool> {
        Ok(true)
    }
}

/// The events of an outbox that wait to be published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub events: u64,
    /// When the first of them (in commit order) happened; `None` when none waits.
    pub oldest: Option<DateTime<Utc>>,
}

/// The outbox table of a SQLite service database (see `sqlite::outbox`).
pub struct SqliteOutbox(pub Db);

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        Ok(self
            .0
            .read(move |c| sqlite::outbox::pending(c, after, limit))
            .await?)
    }

    async fn mark_published(&self, position: i64) -> anyhow::Result<()> {
        self.0
            .write(move |c| {
                sqlite::outbox::delete_through(c, position).map_err(sqlite::DbError::from)
            })
            .await?;
        Ok(())
    }

    async fn backlog(&self, after: i64) -> anyhow::Result<Backlog> {
        let (events, oldest) = self
            .0
            .read(move |c| sqlite::outbox::backlog(c, after))
            .await?;
        Ok(Backlog { events, oldest })
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.0.committed()
    }
}

/// Deletes published rows once this many have gathered …
const DELETE_EVERY_ROWS: i64 = 4096;
/// … or this long after the last delete.
const DELETE_EVERY: Duration = Duration::from_secs(1);

/// Runs the relay of `service` until `shutdown`, then publishes what is left once more.
pub fn spawn_relay(
    service: &'static str,
    outbox: Arc<dyn Outbox>,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // The publish time's series exists from the start, at zero.
    PUBLISH_DURATION.with_label_values(&[service]);
    tokio::spawn(async move {
        let wakeup = outbox.wakeup();
        let mut failures = 0u32;
        let mut relay = Relay {
            service,
            published: 0,
            deleted: 0,
            last_delete: Instant::now(),
        };
        loop {
            let notified = wakeup.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let round = match outbox.hold().await {
                Ok(true) => {
                    RELAY_HOLDS.with_label_values(&[service]).set(1);
                    relay.once(outbox.as_ref(), bus.as_ref()).await
                }
                Ok(false) => {
                    // Another replica publishes: stand by, and try again in a while. The
                    // holder reports the backlog; this one has none of its own to publish (a
                    // former holder must not go on reporting what it left when it lost the
                    // lock, which the new holder has published since).
                    RELAY_HOLDS.with_label_values(&[service]).set(0);
                    OUTBOX_BACKLOG.with_label_values(&[service]).set(0);
                    OUTBOX_OLDEST.set(&[service], None);
                    if shutdown.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    continue;
                }
                Err(error) => {
                    // Cut off from the database, it cannot publish (nor know who does).
                    RELAY_HOLDS.with_label_values(&[service]).set(0);
                    Err(error)
                }
            };
            match round {
                Ok(0) => {
                    failures = 0;
                    if shutdown.is_cancelled() {
                        break;
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Ok(sent) => {
                    failures = 0;
                    // Under load, let a few commits gather before the next round: one publish
                    // per round instead of one per commit halves the broker's work.
                    if sent < BATCH && !shutdown.is_cancelled() {
                        tokio::time::sleep(GATHER).await;
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(service, %error, "outbox relay cannot publish; will retry");
                    // The backlog grows while the broker is away: say so.
                    measure_backlog(service, outbox.as_ref(), relay.published).await;
                    if shutdown.is_cancelled() && failures > 3 {
                        // What is left stays in the outbox and goes out on the next start.
                        break;
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
        if let Err(error) = relay.forget_published(outbox.as_ref()).await {
            tracing::warn!(service, %error, "cannot trim the outbox; its head goes out again on start");
        }
    })
}

struct Relay {
    service: &'static str,
    /// Position of the last event the broker acknowledged.
    published: i64,
    /// Position up to which rows are deleted.
    deleted: i64,
    last_delete: Instant,
}

impl Relay {
    /// Publishes one batch; returns how many events went out.
    async fn once(&mut self, outbox: &dyn Outbox, bus: &dyn Bus) -> anyhow::Result<usize> {
        let batch = outbox.pending(self.published, BATCH).await?;
        let Some(&(last, _)) = batch.last() else {
            if self.published > self.deleted && self.last_delete.elapsed() >= DELETE_EVERY {
                self.forget_published(outbox).await?;
            }
            OUTBOX_BACKLOG.with_label_values(&[self.service]).set(0);
            OUTBOX_OLDEST.set(&[self.service], None);
            return Ok(0);
        };
        let mut envelopes: Vec<Envelope> = batch.into_iter().map(|(_, e)| e).collect();
        let spans = publish_spans(&mut envelopes);
        // These wait at least until the broker takes them: if it never answers, the gauges
        // say so without another look at the outbox.
        let backlog = OUTBOX_BACKLOG.with_label_values(&[self.service]);
        backlog.set(backlog.get().max(envelopes.len() as i64));
        OUTBOX_OLDEST.set(&[self.service], envelopes.first().map(|e| e.occurred_at));
        let started = Instant::now();
        bus.publish(&envelopes).await?;
        drop(spans);
        PUBLISH_DURATION
            .with_label_values(&[self.service])
            .observe(started.elapsed().as_secs_f64());
        self.published = last;
        for envelope in &envelopes {
            PUBLISHED.with_label_values(&[&envelope.name]).inc();
        }
        if self.published - self.deleted >= DELETE_EVERY_ROWS
            || self.last_delete.elapsed() >= DELETE_EVERY
        {
            self.forget_published(outbox).await?;
        }
        measure_backlog(self.service, outbox, self.published).await;
        Ok(envelopes.len())
    }

    async fn forget_published(&mut self, outbox: &dyn Outbox) -> anyhow::Result<()> {
        if self.published > self.deleted {
            outbox.mark_published(self.published).await?;
            self.deleted = self.published;
        }
        self.last_delete = Instant::now();
        Ok(())
    }
}

/// A span per envelope that carries a trace, child of the span that committed it and lasting
/// until the broker holds the batch; each envelope then carries its publish span instead, so
/// that every consumer's apply hangs below the publish.
fn publish_spans(envelopes: &mut [Envelope]) -> Vec<tracing::Span> {
    let mut spans = Vec::new();
    for envelope in envelopes.iter_mut() {
        let Some(trace) = envelope.trace.as_deref() else {
            continue;
        };
        let name = format!("publish {}", envelope.name);
        let span = platform::telemetry::message_span(&name, "producer", &envelope.id, trace);
        // Kept as it was when this process exports no spans: the next one may.
        if let Some(publish) = platform::telemetry::traceparent_of(&span) {
            envelope.trace = Some(publish);
        }
        spans.push(span);
    }
    spans
}

/// Sets `service`'s backlog gauges from what waits in `outbox` after position `published`;
/// leaves them as they were if the outbox cannot say. Also for a relay that cannot start yet
/// (its broker is not ready), whose backlog grows all the same.
pub async fn measure_backlog(service: &str, outbox: &dyn Outbox, published: i64) {
    if let Ok(backlog) = outbox.backlog(published).await {
        OUTBOX_BACKLOG
            .with_label_values(&[service])
            .set(i64::try_from(backlog.events).unwrap_or(i64::MAX));
        OUTBOX_OLDEST.set(&[service], backlog.oldest);
    }
}

/// How long to wait after `failures` failures in a row: 100 ms, 200 ms, … up to 5 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5_000))
}
