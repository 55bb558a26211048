//! The consumer side of a SQLite store: each delivered message applied once, in order.

use contracts::DomainEvent;
use sqlite::rusqlite::Connection;
use sqlite::{DbError, inbox};

use crate::Outcome;

/// Applies `batch` in order inside the caller's write transaction, each message at most once. A
/// message id the inbox holds is a `Duplicate`, and `apply` is not called for it. What `apply`
/// returns decides what is recorded: `Applied` goes into the inbox with its effect; `Retry` and
/// `Poison` record nothing, so `apply` must not have written anything for them. Processing stops
/// after the first `Retry`, as [`crate::Handler::handle`] requires.
pub fn apply_once(
    conn: &Connection,
    batch: &[(String, DomainEvent)],
    mut apply: impl FnMut(&Connection, &DomainEvent) -> Result<Outcome, DbError>,
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
