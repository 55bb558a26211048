//! The idempotent inbox in PostgreSQL: a consumer records each message id in the same
//! transaction in which it applies the message, so a redelivered message changes nothing.
//! The contract is `bus::inbox::apply_once`'s, for SQLite.

use std::future::Future;
use std::pin::Pin;

use bus::Outcome;
use contracts::Envelope;
use sqlx::PgConnection;

use crate::PgError;

pub const MIGRATION: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// What applying one message did: its outcome, and the events it causes.
pub type Applied = (Outcome, Vec<Envelope>);
pub type ApplyFuture<'c> = Pin<Box<dyn Future<Output = Result<Applied, sqlx::Error>> + Send + 'c>>;

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

/// Applies `batch` in order inside the caller's transaction, each message at most once. A
/// message id the inbox holds is a `Duplicate`, and `apply` is not called for it. What `apply`
/// returns decides what is recorded: `Applied` goes into the inbox with its effect; `Retry` and
/// `Poison` record nothing, so `apply` must not have written anything for them (and must return
/// no events). Processing stops after the first `Retry`, as `bus::Handler::handle` requires.
/// Returns the outcomes and the events the applied messages cause, for the caller to commit
/// with `Pg::commit`.
///
/// `E` is what each message carries for `apply`: usually the [`DomainEvent`]; a consumer that
/// needs more of the envelope (when it happened) passes a pair.
///
/// [`DomainEvent`]: contracts::DomainEvent
pub async fn apply_once<E, F>(
    conn: &mut PgConnection,
    batch: &[(String, E)],
    mut apply: F,
) -> Result<(Vec<Outcome>, Vec<Envelope>), sqlx::Error>
where
    F: for<'c> FnMut(&'c mut PgConnection, &'c E) -> ApplyFuture<'c>,
{
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut caused = Vec::new();
    for (message_id, event) in batch {
        if !first_delivery(conn, message_id).await? {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let (outcome, events) = apply(&mut *conn, event).await?;
        if outcome == Outcome::Applied {
            caused.extend(events);
        } else {
            sqlx::query("DELETE FROM inbox WHERE message_id = $1")
                .bind(message_id)
                .execute(&mut *conn)
                .await?;
        }
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok((outcomes, caused))
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
