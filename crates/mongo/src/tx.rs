//! Transactions: every state change of a service, with the events it causes, commits in one
//! multi-document transaction, retried while it conflicts with another.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{ReturnDocument, WriteConcern};
use mongodb::results::UpdateResult;
use mongodb::{ClientSession, Database};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::{Mongo, MongoError, MongoUnit, outbox};

/// How long a transaction keeps being retried while it conflicts with others, before the
/// request is answered 503. Bounded by time, not by a count of attempts: under a flash sale a
/// transaction may lose many races in a row, each one quick.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// The first wait after a conflict; it doubles up to [`MAX_BACKOFF`], with jitter so that the
/// losers do not all come back at once.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, MongoError>> + Send + 't>>;

/// A transaction in progress: the service's database and the session that carries it. Every
/// operation through it is part of the transaction.
pub struct Tx {
    pub session: ClientSession,
    pub db: Database,
}

impl Tx {
    pub async fn find_one<T>(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<Option<T>, MongoError>
    where
        T: DeserializeOwned + Send + Sync,
    {
        Ok(self
            .db
            .collection::<T>(collection)
            .find_one(filter)
            .session(&mut self.session)
            .await?)
    }

    /// The documents `filter` finds, in `sort` order.
    pub async fn find<T>(
        &mut self,
        collection: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Vec<T>, MongoError>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let mut cursor = self
            .db
            .collection::<T>(collection)
            .find(filter)
            .sort(sort)
            .session(&mut self.session)
            .await?;
        let mut documents = Vec::new();
        while cursor.advance(&mut self.session).await? {
            documents.push(cursor.deserialize_current()?);
        }
        Ok(documents)
    }

    pub async fn count(&mut self, collection: &str, filter: Document) -> Result<u64, MongoError> {
        Ok(self
            .db
            .collection::<Document>(collection)
            .count_documents(filter)
            .session(&mut self.session)
            .await?)
    }

    pub async fn insert(&mut self, collection: &str, document: Document) -> Result<(), MongoError> {
        self.db
            .collection::<Document>(collection)
            .insert_one(document)
            .session(&mut self.session)
            .await?;
        Ok(())
    }

    /// Deletes the first document `filter` finds; whether there was one.
    pub async fn delete_one(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<bool, MongoError> {
        let deleted = self
            .db
            .collection::<Document>(collection)
            .delete_one(filter)
            .session(&mut self.session)
            .await?;
        Ok(deleted.deleted_count == 1)
    }

    pub async fn insert_many(
        &mut self,
        collection: &str,
        documents: Vec<Document>,
    ) -> Result<(), MongoError> {
        if !documents.is_empty() {
            self.db
                .collection::<Document>(collection)
                .insert_many(documents)
                .session(&mut self.session)
                .await?;
        }
        Ok(())
    }

    /// Updates the first document `filter` finds; with `upsert`, inserts one if there is none.
    pub async fn update_one(
        &mut self,
        collection: &str,
        filter: Document,
        update: Document,
        upsert: bool,
    ) -> Result<UpdateResult, MongoError> {
        Ok(self
            .db
            .collection::<Document>(collection)
            .update_one(filter, update)
            .upsert(upsert)
            .session(&mut self.session)
            .await?)
    }

    pub async fn update_many(
        &mut self,
        collection: &str,
        filter: Document,
        update: Document,
    ) -> Result<UpdateResult, MongoError> {
        Ok(self
            .db
            .collection::<Document>(collection)
            .update_many(filter, update)
            .session(&mut self.session)
            .await?)
    }

    /// Updates the first document `filter` finds and returns it as it is afterwards; `None` when
    /// nothing matched (and nothing changed). A conditional update like this is checked and
    /// applied in one step.
    pub async fn find_one_and_update<T>(
        &mut self,
        collection: &str,
        filter: Document,
        update: Document,
    ) -> Result<Option<T>, MongoError>
    where
        T: DeserializeOwned + Send + Sync,
    {
        Ok(self
            .db
            .collection::<T>(collection)
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .session(&mut self.session)
            .await?)
    }
}

/// What an attempt that failed calls for.
fn conflicted(e: &MongoError, label: &str) -> bool {
    // Only conflicts the server reports are retried. The driver also labels a lost connection
    // transient, but retrying that for a minute would keep a client waiting while the database
    // is down, where a quick 503 is the answer.
    e.driver().is_some_and(|e| {
        e.contains_label(label)
            && matches!(
                e.kind.as_ref(),
                ErrorKind::Command(_) | ErrorKind::Write(_) | ErrorKind::InsertMany(_)
            )
    })
}

struct Backoff {
    next: Duration,
    until: Instant,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
            until: Instant::now() + RETRY_FOR,
        }
    }

    /// Waits before the next attempt; false when the time for attempts is up.
    async fn wait(&mut self) -> bool {
        if Instant::now() >= self.until {
            return false;
        }
        let jitter = rand::random_range(0..=self.next.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        true
    }
}

impl Mongo {
    /// Runs `work` on a unit over a new transaction and commits it with the events the unit
    /// emitted appended to the outbox, retrying the whole while it conflicts with another
    /// transaction. `work` may run more than once, so it must do nothing but database
    /// operations through its unit's [`Tx`].
    ///
    /// A MongoDB transaction that meets another's uncommitted write aborts at once instead of
    /// waiting for it, as a PostgreSQL row lock would. So that the transactions of one process
    /// (a flash sale's bookings, all on one event) queue rather than abort each other over and
    /// over, they take turns here; transactions of other processes still conflict on the
    /// documents they share (at least the outbox counter) and are retried.
    pub async fn transaction<C, T, F>(&self, context: &C, mut work: F) -> Result<T, MongoError>
    where
        C: Sync + ?Sized,
        T: Send,
        F: for<'u, 't> FnMut(&'u mut MongoUnit<'t>, &'u C) -> TxFuture<'u, T>,
    {
        let db = self.database().await?;
        let mut backoff = Backoff::new();
        let _turn = self.writers().lock().await;
        loop {
            match self.attempt(&db, context, &mut work, &mut backoff).await {
                Ok((value, caused)) => {
                    if caused {
                        self.committed().notify_waiters();
                    }
                    return Ok(value);
                }
                Err(e) if conflicted(&e, TRANSIENT_TRANSACTION_ERROR) && backoff.wait().await => {
                    tracing::debug!(database = %self.name(), error = %e, "transaction conflicted; retrying");
                }
                Err(e) => return Err(self.named(e)),
            }
        }
    }

    /// One attempt of [`Mongo::transaction`]: its value, and whether it wrote to the outbox.
    async fn attempt<C, T, F>(
        &self,
        db: &Database,
        context: &C,
        work: &mut F,
        backoff: &mut Backoff,
    ) -> Result<(T, bool), MongoError>
    where
        C: Sync + ?Sized,
        F: for<'u, 't> FnMut(&'u mut MongoUnit<'t>, &'u C) -> TxFuture<'u, T>,
    {
        let mut session = self.start_session().await?;
        session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .await?;
        let mut tx = Tx {
            session,
            db: db.clone(),
        };
        let done = async {
            let mut unit = MongoUnit::new(&mut tx);
            let value = work(&mut unit, context).await?;
            let caused = unit.caused;
            outbox::append(&mut tx, &caused).await?;
            Ok::<_, MongoError>((value, !caused.is_empty()))
        };
        let (value, caused) = match done.await {
            Ok(done) => done,
            Err(e) => {
                // The server may have ended it already; dropping the session would abort it too.
                let _ = tx.session.abort_transaction().await;
                return Err(e);
            }
        };
        loop {
            match tx.session.commit_transaction().await {
                Ok(()) => return Ok((value, caused)),
                Err(e) => {
                    let e = MongoError::from(e);
                    // The commit may or may not have happened; committing again is safe (the
                    // server answers the first outcome), answering an error is not.
                    if conflicted(&e, UNKNOWN_TRANSACTION_COMMIT_RESULT) && backoff.wait().await {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }
}
