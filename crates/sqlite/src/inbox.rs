//! The idempotent inbox: a consumer records each message id in the same transaction in which it
//! applies the message, so a redelivered message is recognised and changes nothing.

use rusqlite::{Connection, params};

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;";

/// Whether `message_id` was applied before.
pub fn contains(conn: &Connection, message_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM inbox WHERE message_id = ?1")?
        .exists([message_id])
}

/// Records `message_id` as applied.
pub fn record(conn: &Connection, message_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO inbox (message_id, applied_at) VALUES (?1, ?2)")?
        .execute(params![message_id, chrono::Utc::now().timestamp()])?;
    Ok(())
}
