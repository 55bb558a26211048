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
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::Envelope;
use sqlx::{PgConnection, Row};
use tokio::sync::{Mutex, Notify};

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

/// First key of the lock a relay holds while it publishes the outbox (the second is the schema,
/// as for [`OUTBOX_LOCK`]).
const RELAY_LOCK: i32 = 0x7265_6c79; // "rely"

/// How often the holder makes sure that its connection, and so its lock, is still there.
const HOLD_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long that check may take before the holder counts the lock as lost.
const HOLD_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// PostgreSQL ends the holder's session when it has not heard from it for this long (its checks
/// stopped: the process hangs, or a partition cut it off), which frees the lock for another
/// replica; without it the lock would last until TCP gave up on the connection.
const HOLDER_SILENT_FOR: Duration = Duration::from_secs(10);

/// The outbox table of a PostgreSQL service database, for the relay. Replicas of a service share
/// it; a session-level advisory lock, held on a connection of its own, says which relay
/// publishes it ([`bus::Outbox::hold`]). PostgreSQL releases the lock when that connection
/// ends, also when its process is killed.
pub struct PgOutbox {
    pg: Pg,
    holder: Mutex<Holder>,
}

/// The relay's own connection: it holds the lock, or tries again to take it.
#[derive(Default)]
struct Holder {
    conn: Option<PgConnection>,
    held: bool,
    checked: Option<Instant>,
}

impl PgOutbox {
    pub fn new(pg: Pg) -> Self {
        Self {
            pg,
            holder: Mutex::new(Holder::default()),
        }
    }

    /// A connection of the holder's own, outside the pool: the lock lives as long as it does.
    async fn connect(&self) -> anyhow::Result<PgConnection> {
        let mut conn = self.pg.pool().await?.acquire().await?.detach();
        let silent = HOLDER_SILENT_FOR.as_millis();
        crate::query(format!("SET idle_session_timeout = {silent}"))
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }
}

#[async_trait]
impl bus::Outbox for PgOutbox {
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        let rows = sqlx::query(
            "SELECT seq, id, name, key, occurred_at, trace, payload FROM outbox
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pg.pool().await?)
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
            .execute(self.pg.pool().await?)
            .await?;
        Ok(())
    }

    async fn backlog(&self, after: i64) -> anyhow::Result<bus::Backlog> {
        let (count, oldest): (i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT COUNT(*), MIN(occurred_at) FROM outbox WHERE seq > $1")
                .bind(after)
                .fetch_one(self.pg.pool().await?)
                .await?;
        Ok(bus::Backlog {
            events: u64::try_from(count).unwrap_or(0),
            oldest,
        })
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.pg.committed()
    }

    async fn hold(&self) -> anyhow::Result<bool> {
        let mut holder = self.holder.lock().await;
        if holder
            .checked
            .is_some_and(|at| at.elapsed() < HOLD_CHECK_EVERY)
        {
            return Ok(holder.held);
        }
        let mut conn = match holder.conn.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        // Holding: a statement shows that the session, and so the lock, is still there.
        // Standing by: try to take it. A connection that fails or hangs is dropped, and the
        // lock with it; the next call starts again with a new one.
        let was_held = holder.held;
        let asked = async {
            if was_held {
                sqlx::query_scalar::<_, bool>("SELECT TRUE")
                    .fetch_one(&mut conn)
                    .await
            } else {
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                    .bind(RELAY_LOCK)
                    .fetch_one(&mut conn)
                    .await
            }
        };
        holder.held = false;
        holder.checked = Some(Instant::now());
        let held = tokio::time::timeout(HOLD_CHECK_TIMEOUT, asked)
            .await
            .map_err(|_| anyhow::anyhow!("the database did not answer the relay's lock check"))??;
        holder.held = held;
        holder.conn = Some(conn);
        Ok(held)
    }
}
