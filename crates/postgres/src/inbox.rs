//! The idempotent inbox in PostgreSQL: a consumer records each message id in the same
//! transaction in which it applies the message, so a redelivered message changes nothing.
//! `PgUnit` is a store's unit of work over it (see `bus::unit`).

use contracts::Envelope;
use sqlx::PgConnection;

use crate::PgError;

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// Records `message_id`; true the first time, false for a redelivery. A concurrent delivery of
/// the same id waits here until the first one's transaction ends, then sees it.
pub async fn first_delivery(
    conn: &mut PgConnection,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query("INSERT INTO inbox (message_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(message_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// A PostgreSQL store's unit of work: one transaction, and the events it emits, which
/// `Pg::commit` appends to the outbox as the transaction's last step (see the outbox's commit
/// order). `state` is what the service's unit keeps beside it (for bookings, the seats a batch
/// has read and taken so far).
pub struct PgUnit<'c, S = ()> {
    pub conn: &'c mut PgConnection,
    pub caused: Vec<Envelope>,
    pub state: S,
}

impl<'c, S> PgUnit<'c, S> {
    pub fn new(conn: &'c mut PgConnection, state: S) -> Self {
        Self {
            conn,
            caused: Vec::new(),
            state,
        }
    }
}

impl<S> bus::Unit for PgUnit<'_, S> {
    type Error = PgError;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, PgError> {
        Ok(first_delivery(self.conn, message_id).await?)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), PgError> {
        sqlx::query("DELETE FROM inbox WHERE message_id = $1")
            .bind(message_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), PgError> {
        self.caused.push(event.clone());
        Ok(())
    }
}

impl From<bus::unit::Corrupt> for PgError {
    fn from(e: bus::unit::Corrupt) -> Self {
        PgError::Internal(e.to_string())
    }
}
