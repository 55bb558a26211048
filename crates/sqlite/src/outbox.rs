//! The transactional outbox: a service appends the events a state change causes in the same
//! transaction as the change, and a relay publishes them afterwards (see `bus::relay`).

use chrono::{DateTime, Utc};
use contracts::Envelope;
use rusqlite::{Connection, Row, params};

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    key         TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    trace       TEXT,
    payload     TEXT NOT NULL
);";

pub fn append(conn: &Connection, envelope: &Envelope) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (id, name, key, occurred_at, trace, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        envelope.id,
        envelope.name,
        envelope.key,
        envelope.occurred_at.to_rfc3339(),
        envelope.trace,
        envelope.payload
    ])?;
    Ok(())
}

/// The oldest events after position `after`, in the order they were committed.
pub fn pending(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(i64, Envelope)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, name, key, occurred_at, trace, payload FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map([after, limit as i64], |row| {
        Ok((row.get(0)?, envelope_at(row, 1)?))
    })?;
    rows.collect()
}

/// Forgets every event up to `seq` once the broker has them.
pub fn delete_through(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([seq])?;
    Ok(())
}

/// How many events wait after position `after`, and when the first of them happened.
pub fn backlog(conn: &Connection, after: i64) -> rusqlite::Result<(u64, Option<DateTime<Utc>>)> {
    let (count, oldest) = conn
        .prepare_cached(
            "SELECT COUNT(*),
                    (SELECT occurred_at FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 1)
             FROM outbox WHERE seq > ?1",
        )?
        .query_row([after], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
        })?;
    let oldest = oldest
        .map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok((count as u64, oldest))
}

/// Reads an envelope from columns `first..first+6` (id, name, key, occurred_at, trace, payload);
/// the embedded log stores messages the same way.
pub fn envelope_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Envelope> {
    let occurred_at: String = row.get(first + 3)?;
    let occurred_at = DateTime::parse_from_rfc3339(&occurred_at)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                first + 3,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })?;
    Ok(Envelope {
        id: row.get(first)?,
        name: row.get(first + 1)?,
        key: row.get(first + 2)?,
        occurred_at,
        trace: row.get(first + 4)?,
        payload: row.get(first + 5)?,
    })
}
