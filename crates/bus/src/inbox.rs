//! The unit of work of a SQLite store ([`SqliteUnit`]): the writer's transaction, whose inbox
//! and outbox are the file's own tables.

use sqlite::rusqlite::Connection;
use sqlite::{DbError, inbox, outbox};

use crate::unit::{Corrupt, Unit, WouldWait};

/// A SQLite store's unit of work: the connection of the writer's transaction, and what the
/// service's unit keeps beside it (`state`: for bookings, the seats a batch has taken so far).
pub struct SqliteUnit<'c, S = ()> {
    pub conn: &'c Connection,
    pub state: S,
}

impl<'c> SqliteUnit<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self { conn, state: () }
    }
}

impl<S> Unit for SqliteUnit<'_, S> {
    type Error = DbError;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, DbError> {
        Ok(inbox::first_delivery(self.conn, message_id)?)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), DbError> {
        Ok(inbox::forget(self.conn, message_id)?)
    }

    async fn emit(&mut self, event: &contracts::Envelope) -> Result<(), DbError> {
        Ok(outbox::append(self.conn, event)?)
    }
}

impl From<Corrupt> for DbError {
    fn from(e: Corrupt) -> Self {
        DbError::Internal(e.to_string())
    }
}

impl From<WouldWait> for DbError {
    fn from(e: WouldWait) -> Self {
        DbError::Internal(e.to_string())
    }
}
