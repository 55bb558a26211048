//! The outbox relay: publishes what a service committed to its outbox, in commit order, and
//! forgets it only once the broker holds it. A crash between the two publishes again; consumers'
//! inboxes make that harmless (at least once, never never).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::Envelope;
use sqlite::Db;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Bus;
use crate::metrics::{OUTBOX_BACKLOG, PUBLISHED};

const BATCH: usize = 512;
/// A commit wakes the relay at once; this catches writes from another process (`admin create`).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// A service's outbox, whatever stores it.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// The oldest unpublished events with their positions, in commit order.
    async fn pending(&self, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>>;
    /// Forgets everything up to and including `position`.
    async fn mark_published(&self, position: i64) -> anyhow::Result<()>;
    async fn backlog(&self) -> anyhow::Result<u64>;
    /// Notified after the store commits, so the relay need not poll.
    fn wakeup(&self) -> Arc<Notify>;
}

/// The outbox table of a SQLite service database (see `sqlite::outbox`).
pub struct SqliteOutbox(pub Db);

#[async_trait]
impl Outbox for SqliteOutbox {
    async fn pending(&self, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        Ok(self
            .0
            .read(move |c| sqlite::outbox::pending(c, limit))
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

    async fn backlog(&self) -> anyhow::Result<u64> {
        Ok(self.0.read(sqlite::outbox::backlog).await?)
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.0.committed()
    }
}

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
        loop {
            let notified = wakeup.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match relay_once(service, outbox.as_ref(), bus.as_ref()).await {
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
                Ok(_) => failures = 0,
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
    })
}

/// Publishes one batch; returns how many events went out.
async fn relay_once(service: &str, outbox: &dyn Outbox, bus: &dyn Bus) -> anyhow::Result<usize> {
    let batch = outbox.pending(BATCH).await?;
    let Some(&(last, _)) = batch.last() else {
        OUTBOX_BACKLOG.with_label_values(&[service]).set(0);
        return Ok(0);
    };
    let envelopes: Vec<Envelope> = batch.into_iter().map(|(_, e)| e).collect();
    bus.publish(&envelopes).await?;
    outbox.mark_published(last).await?;
    for envelope in &envelopes {
        PUBLISHED.with_label_values(&[&envelope.name]).inc();
    }
    let backlog = outbox.backlog().await.unwrap_or(0);
    OUTBOX_BACKLOG
        .with_label_values(&[service])
        .set(backlog as i64);
    Ok(envelopes.len())
}

/// 100 ms, 200 ms, … up to 5 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5_000))
}
