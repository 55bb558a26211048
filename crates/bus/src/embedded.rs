//! The embedded broker: a durable, ordered log in a SQLite file, so that one process (or several
//! on one machine, sharing the file) keeps every delivery promise with no server to install.
//!
//! Publishing appends to `log`; a relay that publishes again after a crash may append a message
//! twice, which consumers' inboxes recognise. Each consumer group reads only the event names it
//! subscribed to, moves its position only past messages its handler has applied, and writes that
//! position to `offsets` about once a second (see [`Position`]); a message that can never be
//! applied is copied to `dead_letters` and passed over.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use contracts::Envelope;
use sqlite::rusqlite::{OptionalExtension, params};
use sqlite::{Db, DbError, Options};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, CONSUMER_LAG, record_outcome};
use crate::relay::{GATHER, backoff};
use crate::{Bus, BusError, Handler, MAX_ATTEMPTS, Outcome, Subscription};

const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL, -- not unique: a republished event is recognised by inboxes
    name        TEXT NOT NULL,
    key         TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    trace       TEXT,
    payload     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS offsets (
    consumer TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    consumer  TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    id        TEXT NOT NULL,
    name      TEXT NOT NULL,
    payload   TEXT NOT NULL,
    error     TEXT NOT NULL,
    parked_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
);";

const BATCH: usize = 256;
/// Wakes consumers that another process published for; in-process publishes wake them at once.
const POLL: Duration = Duration::from_millis(25);
/// How often a consumer group writes down how far it has read.
const SAVE_POSITION_EVERY: Duration = Duration::from_secs(1);

/// What a consumer read: its messages, and how far the log was scanned for them.
struct Slice {
    messages: Vec<(i64, Envelope)>,
    scanned_through: i64,
    head: i64,
}

/// A parked message, as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub consumer: String,
    pub id: String,
    pub name: String,
    pub payload: String,
    pub error: String,
}

#[derive(Clone)]
pub struct EmbeddedLog {
    db: Db,
}

impl EmbeddedLog {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![MIGRATION],
                ..Options::default()
            },
        )?;
        Ok(Self { db })
    }

    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, DbError> {
        self.db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT consumer, id, name, payload, error FROM dead_letters ORDER BY parked_at, seq",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(DeadLetter {
                        consumer: r.get(0)?,
                        id: r.get(1)?,
                        name: r.get(2)?,
                        payload: r.get(3)?,
                        error: r.get(4)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    async fn position(&self, consumer: &str) -> Result<i64, DbError> {
        let consumer = consumer.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT seq FROM offsets WHERE consumer = ?1",
                    [consumer],
                    |r| r.get(0),
                )
                .optional()
                .map(|seq| seq.unwrap_or(0))
            })
            .await
    }

    /// The next messages named `names` after position `after`. Filtering in SQL spares a
    /// consumer from decoding every other service's traffic.
    async fn read_after(&self, after: i64, names: Arc<[&'static str]>) -> Result<Slice, DbError> {
        self.db
            .read(move |c| {
                // The head first: rows committed later have higher positions, so every wanted
                // row up to it is in the answer unless the batch is full.
                let head: i64 = c
                    .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM log")?
                    .query_row([], |r| r.get(0))?;
                let placeholders = (0..names.len())
                    .map(|i| format!("?{}", i + 4))
                    .collect::<Vec<_>>();
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT seq, id, name, key, occurred_at, trace, payload FROM log
                     WHERE seq > ?1 AND seq <= ?2 AND name IN ({}) ORDER BY seq LIMIT ?3",
                    placeholders.join(", ")
                ))?;
                let mut args: Vec<sqlite::rusqlite::types::Value> =
                    vec![after.into(), head.into(), (BATCH as i64).into()];
                args.extend(
                    names
                        .iter()
                        .map(|n| sqlite::rusqlite::types::Value::Text((*n).to_owned())),
                );
                let messages = stmt
                    .query_map(sqlite::rusqlite::params_from_iter(args), |row| {
                        Ok((row.get(0)?, sqlite::outbox::envelope_at(row, 1)?))
                    })?
                    .collect::<Result<Vec<(i64, Envelope)>, _>>()?;
                let scanned_through = match messages.last() {
                    Some((seq, _)) if messages.len() == BATCH => *seq,
                    _ => head.max(after),
                };
                Ok(Slice {
                    messages,
                    scanned_through,
                    head,
                })
            })
            .await
    }

    /// Moves `consumer` to `through` and parks `parked`, in one transaction.
    async fn acknowledge(
        &self,
        consumer: &str,
        through: i64,
        parked: Vec<(i64, Envelope, String)>,
    ) -> Result<(), DbError> {
        let consumer = consumer.to_owned();
        self.db
            .write(move |c| {
                for (seq, envelope, error) in &parked {
                    c.execute(
                        "INSERT OR IGNORE INTO dead_letters (consumer, seq, id, name, payload, error, parked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![consumer, seq, envelope.id, envelope.name, envelope.payload, error, unix_now()],
                    )?;
                }
                c.prepare_cached(
                    "INSERT INTO offsets (consumer, seq) VALUES (?1, ?2)
                     ON CONFLICT (consumer) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                )?
                .execute(params![consumer, through])?;
                Ok::<_, DbError>(())
            })
            .await
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl Bus for EmbeddedLog {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        let batch = batch.to_vec();
        self.db
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    // OR IGNORE: logs made before the id index was dropped still have it.
                    "INSERT OR IGNORE INTO log (id, name, key, occurred_at, trace, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in &batch {
                    stmt.execute(params![
                        e.id,
                        e.name,
                        e.key,
                        e.occurred_at.to_rfc3339(),
                        e.trace,
                        e.payload
                    ])?;
                }
                Ok::<_, DbError>(())
            })
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }

    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move { consume(log, subscription, handler, shutdown).await })
    }

    async fn check(&self) -> Result<(), String> {
        self.db
            .read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|_| ())
            .map_err(|e| format!("embedded log: {e}"))
    }

    /// The whole log, in order: it keeps every message (it has no retention yet).
    async fn history(&self) -> Result<Vec<Envelope>, BusError> {
        self.db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, name, key, occurred_at, trace, payload FROM log ORDER BY seq",
                )?;
                let rows = stmt.query_map([], |row| sqlite::outbox::envelope_at(row, 0))?;
                rows.collect()
            })
            .await
            .map_err(|e| BusError::Unavailable(format!("embedded log: {e}")))
    }
}

/// A consumer group's position in the log. It moves in memory as messages are handled and is
/// written to `offsets` at most once a second (and on shutdown or when a message is parked):
/// after a crash the group re-reads at most a second of messages, which its inbox recognises.
/// Writing it per batch would cost the log a commit for every commit it receives.
struct Position {
    group: String,
    at: i64,
    saved: i64,
    saved_when: Instant,
}

impl Position {
    async fn save(
        &mut self,
        log: &EmbeddedLog,
        parked: Vec<(i64, Envelope, String)>,
    ) -> Result<(), DbError> {
        if self.at > self.saved || !parked.is_empty() {
            log.acknowledge(&self.group, self.at, parked).await?;
            self.saved = self.at;
        }
        self.saved_when = Instant::now();
        Ok(())
    }
}

async fn consume(
    log: EmbeddedLog,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) {
    let group = subscription.group.as_str();
    metrics::subscribed(&subscription);
    let wanted: Arc<[&'static str]> = subscription.events.clone().into();
    let committed = log.db.committed();
    let mut failures = 0u32;
    let mut position = loop {
        match log.position(group).await {
            Ok(at) => {
                break Position {
                    group: group.to_owned(),
                    at,
                    saved: at,
                    saved_when: Instant::now(),
                };
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(group, %error, "cannot read the consumer position; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    // The message at the head that asked to be retried, and how often it did.
    let mut retrying: Option<(String, u32)> = None;

    while !shutdown.is_cancelled() {
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        if position.saved_when.elapsed() >= SAVE_POSITION_EVERY
            && let Err(error) = position.save(&log, Vec::new()).await
        {
            tracing::warn!(group, %error, "cannot record the consumer position; will retry");
        }
        let slice = match log.read_after(position.at, wanted.clone()).await {
            Ok(slice) => slice,
            Err(error) => {
                failures += 1;
                tracing::warn!(group, %error, "cannot read the embedded log; will retry");
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        CONSUMER_LAG
            .with_label_values(&[group])
            .set(slice.head.saturating_sub(position.at));
        let last_seq = slice.scanned_through;
        metrics::unapplied(group, slice.messages.iter().map(|(_, e)| e));
        if slice.messages.is_empty() {
            if last_seq > position.at {
                position.at = last_seq; // only other consumers' messages
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }

        let (seqs, envelopes): (Vec<i64>, Vec<Envelope>) = slice.messages.into_iter().unzip();
        let outcomes = if envelopes.is_empty() {
            Vec::new()
        } else {
            match handler.handle(&envelopes).await {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(group, %error, "consumer cannot apply events; will retry");
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            }
        };
        failures = 0;

        // Move through the last message handled; stop before one to retry.
        let mut through = if outcomes.len() >= envelopes.len() {
            last_seq
        } else {
            seqs[outcomes.len()] - 1
        };
        let mut parked = Vec::new();
        let mut retry_after = None;
        for ((seq, envelope), outcome) in seqs.iter().zip(&envelopes).zip(&outcomes) {
            record_outcome(group, &envelope.name, outcome);
            match outcome {
                Outcome::Applied | Outcome::Duplicate => {}
                Outcome::Poison(error) => {
                    tracing::error!(group, id = %envelope.id, name = %envelope.name, %error, "parking a message that cannot be applied");
                    parked.push((*seq, envelope.clone(), error.clone()));
                }
                Outcome::Retry(error) => {
                    let attempts = match &retrying {
                        Some((id, n)) if *id == envelope.id => n + 1,
                        _ => 1,
                    };
                    if attempts >= MAX_ATTEMPTS {
                        tracing::error!(group, id = %envelope.id, %error, attempts, "parking a message that kept failing");
                        parked.push((*seq, envelope.clone(), error.clone()));
                        through = *seq;
                        retrying = None;
                    } else {
                        tracing::info!(group, id = %envelope.id, %error, attempts, "will deliver again");
                        through = seq - 1;
                        retrying = Some((envelope.id.clone(), attempts));
                        retry_after = Some(backoff(attempts));
                    }
                    break;
                }
            }
        }
        if retry_after.is_none() && outcomes.len() >= envelopes.len() {
            retrying = None;
        }
        position.at = position.at.max(through);
        metrics::unapplied(
            group,
            seqs.iter()
                .zip(&envelopes)
                .filter(|(seq, _)| **seq > position.at)
                .map(|(_, e)| e),
        );
        let names: Vec<String> = parked.iter().map(|(_, e, _)| e.name.clone()).collect();
        if !parked.is_empty() {
            match position.save(&log, parked).await {
                Ok(()) => names.iter().for_each(|n| metrics::dead_lettered(group, n)),
                Err(error) => {
                    // Not recorded: the parked messages come again and are parked again.
                    tracing::warn!(group, %error, "cannot park messages; will retry");
                    tokio::time::sleep(backoff(1)).await;
                }
            }
        }
        // After a partial batch, let a few more messages gather (see `relay::GATHER`).
        let pause = retry_after.unwrap_or(if envelopes.len() < BATCH {
            GATHER
        } else {
            Duration::ZERO
        });
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
    if let Err(error) = position.save(&log, Vec::new()).await {
        tracing::warn!(group, %error, "cannot record the consumer position on shutdown");
    }
}
