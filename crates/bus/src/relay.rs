//! The outbox relay: publishes what a service committed to its outbox, in commit order, and
//! forgets it only once the broker holds it. A crash between the two publishes again; consumers'
//! inboxes make that harmless (at least once, never never).
//!
//! The relay remembers how far it has published in memory and deletes published rows in bulk
//! (every few thousand events or every second): a delete per batch would cost the service's
//! writer a second commit for every commit it makes. After a crash, what was published but not
//! yet deleted goes out once more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use contracts::Envelope;
use sqlite::Db;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Bus;
use crate::metrics::{OUTBOX_BACKLOG, PUBLISHED};

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
    /// How many events wait after `position`.
    async fn backlog(&self, after: i64) -> anyhow::Result<u64>;
    /// Notified after the store commits, so the relay need not poll.
    fn wakeup(&self) -> Arc<Notify>;
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

    async fn backlog(&self, after: i64) -> anyhow::Result<u64> {
        Ok(self
            .0
            .read(move |c| sqlite::outbox::backlog(c, after))
            .await?)
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
            match relay.once(outbox.as_ref(), bus.as_ref()).await {
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
            return Ok(0);
        };
        let envelopes: Vec<Envelope> = batch.into_iter().map(|(_, e)| e).collect();
        bus.publish(&envelopes).await?;
        self.published = last;
        for envelope in &envelopes {
            PUBLISHED.with_label_values(&[&envelope.name]).inc();
        }
        if self.published - self.deleted >= DELETE_EVERY_ROWS
            || self.last_delete.elapsed() >= DELETE_EVERY
        {
            self.forget_published(outbox).await?;
        }
        let backlog = outbox.backlog(self.published).await.unwrap_or(0);
        OUTBOX_BACKLOG
            .with_label_values(&[self.service])
            .set(backlog as i64);
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

/// How long to wait after `failures` failures in a row: 100 ms, 200 ms, … up to 5 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5_000))
}
