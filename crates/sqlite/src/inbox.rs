//! The idempotent inbox: a consumer records each message id in the same transaction in which it
//! applies the message, so a redelivered message is recognised and changes nothing.

use rusqlite::{Connection, params};

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;";

/// Records `message_id`; true the first time, false for a redelivery.
pub fn first_delivery(conn: &Connection, message_id: &str) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO inbox (message_id, applied_at) VALUES (?1, ?2)")?
        .execute(params![message_id, chrono::Utc::now().timestamp()])?;
    Ok(inserted == 1)
}

/// Takes back a [`first_delivery`] whose message was not applied after all.
pub fn forget(conn: &Connection, message_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM inbox WHERE message_id = ?1")?
        .execute([message_id])?;
    Ok(())
}
