//! The idempotent inbox in MongoDB: a consumer records each message id, as the `_id` of a
//! document, in the same transaction in which it applies the message, so a redelivered message
//! changes nothing. The contract is `bus::inbox::apply_once`'s, for SQLite.

use bus::Outcome;
use contracts::Envelope;
use mongodb::bson::{Document, doc};

use crate::db::Collection;
use crate::{MongoError, Tx, TxFuture};

pub const INBOX: &str = "inbox";

/// What applying one message did: its outcome, and the events it causes.
pub type Applied = (Outcome, Vec<Envelope>);

pub(crate) fn collection() -> Collection {
    Collection::new(INBOX)
}

/// Whether `message_id` was applied before (by a transaction committed before this one began,
/// or earlier in this one).
pub async fn seen(tx: &mut Tx, message_id: &str) -> Result<bool, MongoError> {
    let found: Option<Document> = tx.find_one(INBOX, doc! {"_id": message_id}).await?;
    Ok(found.is_some())
}

/// Records `message_id` as applied. A concurrent transaction recording the same id conflicts
/// with this one, and the one retried then finds it [`seen`].
pub async fn record(tx: &mut Tx, message_id: &str) -> Result<(), MongoError> {
    let now = mongodb::bson::DateTime::now();
    tx.insert(INBOX, doc! {"_id": message_id, "applied_at": now})
        .await
}

/// Applies `batch` in order inside the caller's transaction, each message at most once. A
/// message id the inbox holds is a `Duplicate`, and `apply` is not called for it. What `apply`
/// returns decides what is recorded: `Applied` goes into the inbox with its effect; `Retry` and
/// `Poison` record nothing, so `apply` must not have written anything for them (and must return
/// no events). Processing stops after the first `Retry`, as `bus::Handler::handle` requires.
/// Returns the outcomes and the events the applied messages cause, the shape
/// `Mongo::transaction` commits.
///
/// `E` is what each message carries for `apply`: usually the [`DomainEvent`]; a consumer that
/// needs more of the envelope (when it happened) passes a pair.
///
/// [`DomainEvent`]: contracts::DomainEvent
pub async fn apply_once<E, F>(
    tx: &mut Tx,
    batch: &[(String, E)],
    mut apply: F,
) -> Result<(Vec<Outcome>, Vec<Envelope>), MongoError>
where
    F: for<'t> FnMut(&'t mut Tx, &'t E) -> TxFuture<'t, Applied>,
{
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut caused = Vec::new();
    for (message_id, event) in batch {
        if seen(tx, message_id).await? {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let (outcome, events) = apply(tx, event).await?;
        if outcome == Outcome::Applied {
            record(tx, message_id).await?;
            caused.extend(events);
        }
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok((outcomes, caused))
}

/// A MongoDB store's unit of work: one transaction of [`crate::Mongo::transaction`], and the
/// events it emits, which that commits with it. `state` is what the service's unit keeps beside
/// it.
pub struct MongoUnit<'t, S = ()> {
    pub tx: &'t mut Tx,
    pub caused: Vec<Envelope>,
    pub state: S,
}

impl<'t, S> MongoUnit<'t, S> {
    pub fn new(tx: &'t mut Tx, state: S) -> Self {
        Self {
            tx,
            caused: Vec::new(),
            state,
        }
    }
}

impl<S> bus::Unit for MongoUnit<'_, S> {
    type Error = MongoError;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, MongoError> {
        if seen(self.tx, message_id).await? {
            return Ok(false);
        }
        record(self.tx, message_id).await?;
        Ok(true)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), MongoError> {
        self.tx.delete_one(INBOX, doc! {"_id": message_id}).await?;
        Ok(())
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), MongoError> {
        self.caused.push(event.clone());
        Ok(())
    }
}

impl From<bus::unit::Corrupt> for MongoError {
    fn from(e: bus::unit::Corrupt) -> Self {
        MongoError::Invalid(e.to_string())
    }
}
