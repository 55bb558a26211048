//! The idempotent inbox in DynamoDB: a consumer puts an item per message id, on condition that
//! none exists, in the same transaction as the state change the message causes, so a
//! redelivered message changes nothing. [`DynamoUnit`] is a store's unit of work over it (see
//! `bus::unit`).

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
    /// A part committed on its own ([`DynamoUnit::commit_part`]) was refused: nothing more of
    /// this unit is written, and its commit is refused, so that the change is made again from
    /// what is there now.
    spoiled: bool,
    pub state: S,
}

/// What a service's unit keeps back until it commits (writes to one item merged into one, as a
/// transaction may touch an item only once), to be added to its writes then.
pub trait Deferred {
    fn settle(&mut self, db: &Dynamo, writes: &mut Vec<Write>);
}

impl Deferred for () {
    fn settle(&mut self, _: &Dynamo, _: &mut Vec<Write>) {}
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

impl<'d, S: Deferred> DynamoUnit<'d, S> {
    pub fn new(db: &'d Dynamo, state: S) -> Self {
        Self {
            db,
            writes: Vec::new(),
            caused: Vec::new(),
            recording: None,
            spoiled: false,
            state,
        }
    }

    /// Makes the writes, the events and the inbox record in one transaction, and empties the
    /// unit.
    pub async fn commit(&mut self) -> Result<Committed, DynamoError> {
        if self.spoiled {
            return Ok(Committed::Refused(Vec::new()));
        }
        self.state.settle(self.db, &mut self.writes);
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
    /// for a change too big for one transaction, which is made again (or redelivered after a
    /// crash in between) to make the rest. A part refused spoils the unit (see `spoiled`).
    pub async fn commit_part(&mut self) -> Result<(), DynamoError> {
        self.state.settle(self.db, &mut self.writes);
        let writes = std::mem::take(&mut self.writes);
        let caused = std::mem::take(&mut self.caused);
        if !self.spoiled && self.db.commit(writes, &caused).await? != Commit::Done {
            self.spoiled = true;
        }
        Ok(())
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
pub async fn apply_each<'d, S: Deferred, E>(
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

/// A rule's run over a unit, boxed (see [`until_committed`]).
pub type Run<'u, T> = Pin<Box<dyn Future<Output = Result<T, DynamoError>> + Send + 'u>>;

/// Runs `rule` on `input` in a new unit until its writes commit: a refused condition means that
/// what the rule read changed meanwhile (seats taken, an address signed up, a mail recorded by
/// another sender), and it decides again on what is there now. Gives up, unavailable, when the
/// conflict outlasts the database's patience.
pub async fn until_committed<'d, S, C, T>(
    db: &'d Dynamo,
    what: &str,
    input: &C,
    mut rule: impl for<'u> FnMut(&'u mut DynamoUnit<'d, S>, &'u C) -> Run<'u, T>,
) -> Result<T, DynamoError>
where
    S: Deferred + Default,
    C: Sync + ?Sized,
{
    let started = Instant::now();
    loop {
        let mut unit = DynamoUnit::new(db, S::default());
        let done = rule(&mut unit, input).await?;
        if !matches!(unit.commit().await?, Committed::Refused(_)) {
            return Ok(done);
        }
        db.patience(started, what)?;
        tokio::time::sleep(crate::jitter()).await;
    }
}
