//! The consumer side of a SQLite store: each delivered message applied once, in order.

use sqlite::rusqlite::Connection;
use sqlite::{DbError, inbox};

use crate::Outcome;

/// Applies `batch` in order inside the caller's write transaction, each message at most once. A
/// message id the inbox holds is a `Duplicate`, and `apply` is not called for it. What `apply`
/// returns decides what is recorded: `Applied` goes into the inbox with its effect; `Retry` and
/// `Poison` record nothing, so `apply` must not have written anything for them. Processing stops
/// after the first `Retry`, as [`crate::Handler::handle`] requires.
///
/// `E` is what each message carries for `apply`: usually the [`DomainEvent`]; a consumer that
/// needs more of the envelope (when it happened) passes a pair.
///
/// [`DomainEvent`]: contracts::DomainEvent
pub fn apply_once<E>(
    conn: &Connection,
    batch: &[(String, E)],
    mut apply: impl FnMut(&Connection, &E) -> Result<Outcome, DbError>,
) -> Result<Vec<Outcome>, DbError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for (message_id, event) in batch {
        // Recorded first, one statement on the common path; taken back if not applied.
        if !inbox::first_delivery(conn, message_id)? {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let outcome = apply(conn, event)?;
        if outcome != Outcome::Applied {
            inbox::forget(conn, message_id)?;
        }
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok(outcomes)
}
