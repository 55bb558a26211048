//! The idempotent inbox in MongoDB: a consumer records each message id, as the `_id` of a
//! document, in the same transaction in which it applies the message, so a redelivered message
//! changes nothing. `MongoUnit` is a store's unit of work over it (see `bus::unit`).

use contracts::Envelope;
use mongodb::bson::{Document, doc};

use crate::db::Collection;
use crate::{MongoError, Tx};

pub const INBOX: &str = "inbox";

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

/// A MongoDB store's unit of work: one transaction of [`crate::Mongo::transaction`], and the
/// events it emits, which that commits with it. It keeps nothing else: the transaction itself
/// sees its own writes, and conflicts are the server's to detect.
pub struct MongoUnit<'t> {
    pub tx: &'t mut Tx,
    pub caused: Vec<Envelope>,
}

impl<'t> MongoUnit<'t> {
    pub fn new(tx: &'t mut Tx) -> Self {
        Self {
            tx,
            caused: Vec::new(),
        }
    }
}

impl bus::Unit for MongoUnit<'_> {
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
