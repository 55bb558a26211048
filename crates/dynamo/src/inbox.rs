//! The idempotent inbox in DynamoDB: a consumer puts an item per message id, on condition that
//! none exists, in the same transaction as the state change the message causes, so a
//! redelivered message changes nothing. The contract is `bus::inbox::apply_once`'s, for SQLite.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bus::Outcome;
use chrono::Utc;
use contracts::Envelope;

use crate::item::{item, n, s};
use crate::{Commit, Dynamo, DynamoError, KeyKind, Table, Write};

pub const TABLE: &str = "inbox";

/// The inbox table of every service that consumes events.
pub fn table() -> Table {
    Table::new(TABLE, ("id", KeyKind::S))
}

/// What applying one message would do: its outcome and, if `Applied`, the writes (each with the
/// condition under which it is still right) and the events they cause.
pub struct Change {
    pub outcome: Outcome,
    pub writes: Vec<Write>,
    pub caused: Vec<Envelope>,
}

impl Change {
    pub fn applied(writes: Vec<Write>, caused: Vec<Envelope>) -> Change {
        Change {
            outcome: Outcome::Applied,
            writes,
            caused,
        }
    }

    /// `Retry` or `Poison`: nothing is written.
    pub fn not_applied(outcome: Outcome) -> Change {
        Change {
            outcome,
            writes: Vec::new(),
            caused: Vec::new(),
        }
    }
}

pub type ChangeFuture<'e> = Pin<Box<dyn Future<Output = Result<Change, DynamoError>> + Send + 'e>>;

/// The write that records `message_id`, and fails if it is recorded already.
pub fn record(db: &Dynamo, message_id: &str) -> Write {
    Write::put(
        db.table(TABLE),
        item([
            ("id", s(message_id)),
            ("applied_at", n(Utc::now().timestamp())),
        ]),
    )
    .when("attribute_not_exists(id)")
}

/// Whether `message_id` was applied already.
pub async fn seen(db: &Dynamo, message_id: &str) -> Result<bool, DynamoError> {
    Ok(db
        .get(TABLE, item([("id", s(message_id))]))
        .await?
        .is_some())
}

/// Applies `batch` in order, each message at most once, each in a transaction of its own with
/// its inbox record. A message id the inbox holds is a `Duplicate`, and `change` is not called
/// for it. `change` reads what it needs and says what to write; `Retry` and `Poison` record
/// nothing. When a write's condition fails (the state moved between the read and the write),
/// `change` is asked again. Processing stops after the first `Retry`, as
/// `bus::Handler::handle` requires.
///
/// An error part-way leaves the messages before it applied and recorded: their redelivery is a
/// `Duplicate`, so the whole batch may come again as the handler's contract says.
pub async fn apply_once<E, F>(
    db: &Dynamo,
    batch: &[(String, E)],
    mut change: F,
) -> Result<Vec<Outcome>, DynamoError>
where
    F: for<'e> FnMut(&'e Dynamo, &'e E) -> ChangeFuture<'e>,
{
    let mut outcomes = Vec::with_capacity(batch.len());
    for (message_id, event) in batch {
        let started = Instant::now();
        let outcome = loop {
            if seen(db, message_id).await? {
                break Outcome::Duplicate;
            }
            let Change {
                outcome,
                mut writes,
                caused,
            } = change(db, event).await?;
            if outcome != Outcome::Applied {
                break outcome;
            }
            let recorded_at = writes.len();
            writes.push(record(db, message_id));
            match db.commit(writes, &caused).await? {
                Commit::Done => break Outcome::Applied,
                // Delivered twice at once, and the other delivery was first.
                Commit::Refused(failed) if failed.contains(&recorded_at) => {
                    break Outcome::Duplicate;
                }
                Commit::Refused(_) => {
                    db.patience(started, "applying a message")?;
                    tokio::time::sleep(crate::jitter()).await;
                }
            }
        };
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok(outcomes)
}

/// A DynamoDB store's unit of work. Reads go to the database as they are made (consistent
/// reads); writes are collected, each with the condition under which it is still right, and
/// [`DynamoUnit::commit`] makes them in one transaction with the events emitted and the inbox
/// record. `state` is what the service's unit keeps beside it.
pub struct DynamoUnit<'d, S = ()> {
    pub db: &'d Dynamo,
    pub writes: Vec<Write>,
    pub caused: Vec<Envelope>,
    /// The message this unit applies, recorded by its last commit.
    recording: Option<String>,
    pub state: S,
}

/// What [`DynamoUnit::commit`] made of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Done,
    /// The message was recorded meanwhile, by a delivery of it at the same time; nothing written.
    Duplicate,
    /// The conditions of the writes at these indexes of [`DynamoUnit::writes`] did not hold;
    /// nothing written.
    Refused(Vec<usize>),
}

impl<'d, S> DynamoUnit<'d, S> {
    pub fn new(db: &'d Dynamo, state: S) -> Self {
        Self {
            db,
            writes: Vec::new(),
            caused: Vec::new(),
            recording: None,
            state,
        }
    }

    /// Makes the writes, the events and the inbox record in one transaction, and empties the
    /// unit.
    pub async fn commit(&mut self) -> Result<Committed, DynamoError> {
        let mut writes = std::mem::take(&mut self.writes);
        let recorded_at = writes.len();
        if let Some(message_id) = self.recording.take() {
            writes.push(record(self.db, &message_id));
        }
        let caused = std::mem::take(&mut self.caused);
        Ok(match self.db.commit(writes, &caused).await? {
            Commit::Done => Committed::Done,
            Commit::Refused(failed) if failed.contains(&recorded_at) => Committed::Duplicate,
            Commit::Refused(failed) => Committed::Refused(failed),
        })
    }

    /// Makes what is collected so far, without the inbox record, which waits for the last part:
    /// for a change too big for one transaction, whose redelivery after a crash in between
    /// makes the rest.
    pub async fn commit_part(&mut self) -> Result<Commit, DynamoError> {
        let writes = std::mem::take(&mut self.writes);
        let caused = std::mem::take(&mut self.caused);
        self.db.commit(writes, &caused).await
    }
}

impl<S> bus::Unit for DynamoUnit<'_, S> {
    type Error = DynamoError;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, DynamoError> {
        if seen(self.db, message_id).await? {
            return Ok(false);
        }
        self.recording = Some(message_id.to_owned());
        Ok(true)
    }

    async fn forget_delivery(&mut self, _: &str) -> Result<(), DynamoError> {
        self.recording = None;
        Ok(())
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), DynamoError> {
        self.caused.push(event.clone());
        Ok(())
    }
}

impl From<bus::unit::Corrupt> for DynamoError {
    fn from(e: bus::unit::Corrupt) -> Self {
        DynamoError::Data(e.to_string())
    }
}

/// Applies `batch` in order, each message at most once, each in a unit (a transaction) of its
/// own made by `unit`: see `bus::apply_once`. When a write's condition fails (the state moved
/// between the read and the write), the message is applied again in a new unit. An error
/// part-way leaves the messages before it applied and recorded: their redelivery is a
/// `Duplicate`.
pub async fn apply_each<'d, S, E>(
    db: &'d Dynamo,
    batch: &[(String, E)],
    mut state: impl FnMut() -> S,
    rule: &mut impl bus::unit::Apply<DynamoUnit<'d, S>, E>,
) -> Result<Vec<Outcome>, DynamoError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for message in batch {
        let started = Instant::now();
        let outcome = loop {
            let mut unit = DynamoUnit::new(db, state());
            let applied = bus::apply_once(&mut unit, std::slice::from_ref(message), rule).await?;
            let outcome = applied.into_iter().next().unwrap_or(Outcome::Duplicate);
            if outcome != Outcome::Applied {
                break outcome;
            }
            match unit.commit().await? {
                Committed::Done => break Outcome::Applied,
                Committed::Duplicate => break Outcome::Duplicate,
                Committed::Refused(_) => {
                    db.patience(started, "applying a message")?;
                    tokio::time::sleep(crate::jitter()).await;
                }
            }
        };
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok(outcomes)
}
