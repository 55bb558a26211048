//! The transactional outbox in MongoDB: a service appends the events a state change causes in
//! the same transaction as the change, and the relay (`bus::relay`) publishes them afterwards.
//!
//! The relay remembers only the highest position it has published, so positions must become
//! visible in increasing order. Each transaction that appends draws its positions by
//! incrementing one counter document, as its last step. Two transactions cannot both have
//! written that document uncommitted: the second conflicts, aborts and is retried (see
//! `Mongo::transaction`), and a transaction that started before the first committed conflicts
//! too (snapshot isolation: first committer wins). So a transaction draws position n + 1 only
//! after the one that drew n has committed, and a reader that sees n + 1 sees n; an aborted
//! transaction takes its increment back with it, leaving no gap.
//!
//! Why not a change stream: it would give commit order for free, but the relay would need a
//! resume token stored somewhere and a replica set (a standalone server has no change streams);
//! the counter works on every deployment, and keeps the relay the same as for PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::Envelope;
use mongodb::bson::{Document, doc};
use tokio::sync::Notify;

use crate::db::Collection;
use crate::{Mongo, MongoError, Tx};

pub const OUTBOX: &str = "outbox";
/// Counters, by `_id`; the outbox's is `outbox`, with the last position drawn.
pub const COUNTERS: &str = "counters";

/// The outbox collection; its `_id` is the position, so it needs no other index.
pub(crate) fn collection() -> [Collection; 2] {
    [Collection::new(OUTBOX), Collection::new(COUNTERS)]
}

/// The counter starts at 0 before any transaction needs it: two transactions inserting it at
/// once would fail on its `_id` instead of conflicting and being retried.
pub(crate) fn seeds() -> [(&'static str, Document); 1] {
    [(COUNTERS, doc! {"_id": OUTBOX, "position": 0_i64})]
}

/// Appends `envelopes`, in order, as the last step of the transaction (see the module comment).
pub(crate) async fn append(tx: &mut Tx, envelopes: &[Envelope]) -> Result<(), MongoError> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(envelopes.len()).unwrap_or(i64::MAX);
    let counter: Option<Document> = tx
        .find_one_and_update(
            COUNTERS,
            doc! {"_id": OUTBOX},
            doc! {"$inc": {"position": count}},
        )
        .await?;
    let last = counter
        .and_then(|c| c.get_i64("position").ok())
        .ok_or_else(|| MongoError::Invalid("the outbox counter is missing".into()))?;
    let documents = envelopes
        .iter()
        .zip(last - count + 1..)
        .map(|(e, position)| {
            doc! {
                "_id": position,
                "id": &e.id,
                "name": &e.name,
                "key": &e.key,
                // Text keeps the time to the nanosecond; a BSON date keeps milliseconds.
                "occurred_at": e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "trace": e.trace.as_deref(),
                "payload": &e.payload,
            }
        })
        .collect();
    tx.insert_many(OUTBOX, documents).await
}

fn envelope(d: &Document) -> Result<(i64, Envelope), MongoError> {
    let text = |field: &str| {
        d.get_str(field)
            .map(str::to_owned)
            .map_err(|e| MongoError::Invalid(format!("outbox entry: {field}: {e}")))
    };
    let occurred_at = chrono::DateTime::parse_from_rfc3339(&text("occurred_at")?)
        .map_err(|e| MongoError::Invalid(format!("outbox entry: occurred_at: {e}")))?
        .to_utc();
    let position = d
        .get_i64("_id")
        .map_err(|e| MongoError::Invalid(format!("outbox entry: _id: {e}")))?;
    let envelope = Envelope {
        id: text("id")?,
        name: text("name")?,
        key: text("key")?,
        occurred_at,
        trace: d.get_str("trace").ok().map(str::to_owned),
        payload: text("payload")?,
    };
    Ok((position, envelope))
}

/// The outbox collection of a MongoDB service database, for the relay.
pub struct MongoOutbox(pub Mongo);

#[async_trait]
impl bus::Outbox for MongoOutbox {
    async fn pending(&self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Envelope)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let documents: Vec<Document> = self
            .0
            .find(
                OUTBOX,
                doc! {"_id": {"$gt": after}},
                doc! {"_id": 1},
                Some(limit),
            )
            .await?;
        Ok(documents
            .iter()
            .map(envelope)
            .collect::<Result<_, _>>()
            .map_err(|e| self.0.named(e))?)
    }

    async fn mark_published(&self, position: i64) -> anyhow::Result<()> {
        let db = self.0.database().await?;
        db.collection::<Document>(OUTBOX)
            .delete_many(doc! {"_id": {"$lte": position}})
            .await
            .map_err(|e| self.0.named(e.into()))?;
        Ok(())
    }

    async fn backlog(&self, after: i64) -> anyhow::Result<bus::Backlog> {
        let db = self.0.database().await?;
        let events = db
            .collection::<Document>(OUTBOX)
            .count_documents(doc! {"_id": {"$gt": after}})
            .await
            .map_err(|e| self.0.named(e.into()))?;
        if events == 0 {
            return Ok(bus::Backlog::default());
        }
        let first: Vec<Document> = self
            .0
            .find(
                OUTBOX,
                doc! {"_id": {"$gt": after}},
                doc! {"_id": 1},
                Some(1),
            )
            .await?;
        let oldest = first
            .first()
            .map(envelope)
            .transpose()
            .map_err(|e| self.0.named(e))?
            .map(|(_, e)| e.occurred_at);
        Ok(bus::Backlog { events, oldest })
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.0.committed()
    }
}
