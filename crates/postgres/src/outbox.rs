//! The transactional outbox in PostgreSQL: a service appends the events a state change causes in
//! the same transaction as the change, and the relay (`bus::relay`) publishes them afterwards.
//!
//! The relay remembers only the highest position it has published, so positions must become
//! visible in increasing order. A BIGSERIAL alone does not give that: two transactions draw 7
//! and 8, the one with 8 commits first, the relay publishes 8 and then never looks below it, and
//! 7 is lost. So [`append`] takes a transaction-level advisory lock before drawing positions; it
//! is held until the transaction ends, so the next transaction that appends draws its
//! positions only after this one has committed (or rolled back, leaving a harmless gap) and is
//! visible. Appending is therefore the last step of every transaction, which keeps the time
//! the lock is held to the commit itself.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use sqlx::{PgConnection, Row};
use tokio::sync::Notify;

use crate::Pg;

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    key         TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    trace       TEXT,
    payload     TEXT NOT NULL
);";

/// First key of the outbox lock; the second is the schema, so services sharing a database do
/// not wait for each other.
const OUTBOX_LOCK: i32 = 0x6f75_7462; // "outb"

/// Appends `envelopes`, in order, as the last step of the caller's transaction (see the module
/// comment for why last).
pub async fn append(conn: &mut PgConnection, envelopes: &[Envelope]) -> Result<(), sqlx::Error> {
    if envelopes.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(OUTBOX_LOCK)
        .execute(&mut *conn)
        .await?;
    let mut ids = Vec::with_capacity(envelopes.len());
    let mut names = Vec::with_capacity(envelopes.len());
    let mut keys = Vec::with_capacity(envelopes.len());
    let mut times = Vec::with_capacity(envelopes.len());
    let mut traces = Vec::with_capacity(envelopes.len());
    let mut payloads = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        ids.push(e.id.as_str());
        names.push(e.name.as_str());
        keys.push(e.key.as_str());
        times.push(e.occurred_at);
        traces.push(e.trace.as_deref());
        payloads.push(e.payload.as_str());
    }
    // One statement for the lot; ORDER BY keeps the positions in the order given.
    sqlx::query(
        "INSERT INTO outbox (id, name, key, occurred_at, trace, payload)
         SELECT id, name, key, occurred_at, trace, payload
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
              WITH ORDINALITY AS e (id, name, key, occurred_at, trace, payload, n)
         ORDER BY n",
    )
    .bind(ids)
    .bind(names)
    .bind(keys)
    .bind(times)
    .bind(traces)
    .bind(payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The outbox table of a PostgreSQL service database, for the relay.
pub struct PgOutbox(pub Pg);

#[async_trait]
impl bus::Outbox for PgOutbox {
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        let rows = sqlx::query(
            "SELECT seq, id, name, key, occurred_at, trace, payload FROM outbox
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.0.pool().await?)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let occurred_at: DateTime<Utc> = row.try_get("occurred_at")?;
            let envelope = Envelope {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                key: row.try_get("key")?,
                occurred_at,
                trace: row.try_get("trace")?,
                payload: row.try_get("payload")?,
            };
            pending.push((row.try_get("seq")?, envelope));
        }
        Ok(pending)
    }

    async fn mark_published(&self, position: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM outbox WHERE seq <= $1")
            .bind(position)
            .execute(self.0.pool().await?)
            .await?;
        Ok(())
    }

    async fn backlog(&self, after: i64) -> anyhow::Result<bus::Backlog> {
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT COUNT(*), MIN(occurred_at) FROM outbox WHERE seq > $1")
                .bind(after)
                .fetch_one(self.0.pool().await?)
                .await?;
        Ok(bus::Backlog {
            events: u64::try_from(count).unwrap_or(0),
            oldest,
        })
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.0.committed()
    }
}
