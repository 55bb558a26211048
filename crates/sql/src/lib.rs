//! SQL stated once for both SQL backends. A service writes each statement once, with `$1`, `$2`
//! … placeholders, against [`Conn`]; [`SqliteConn`] runs it on SQLite (the writer's or a
//! reader's connection) and `PgConn` on PostgreSQL (a transaction or a pooled connection).
//! What truly differs between the two stays visible where it is used: the schema, and a
//! [`Dialect`] asked for the few clauses only one of them has (row locks).
//!
//! [`SqlUnit`] is the unit of work over a connection (see `bus::unit`): the inbox is the
//! connection's, and the events a unit emits are appended to the outbox when it commits, last.
#![allow(async_fn_in_trait)]

mod batcher;
mod db;
#[cfg(feature = "postgres")]
mod pg;
mod sqlite_conn;

use std::borrow::Cow;

use contracts::Envelope;

pub use batcher::Batcher;
pub use db::{Db, now};
#[cfg(feature = "postgres")]
pub use pg::{PgConn, acquire};
pub use sqlite_conn::{SqliteConn, in_writer, on_reader};

/// Which database a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `select` with its rows locked to the commit (` FOR UPDATE`) on PostgreSQL; as it is on
    /// SQLite, whose writer holds the whole file's write lock for the transaction anyway.
    pub fn locked(self, select: &'static str) -> Cow<'static, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(select),
            Dialect::Postgres => Cow::Owned(format!("{select} FOR UPDATE")),
        }
    }
}

/// A value bound to a placeholder. Each kind carries its own NULL, so that PostgreSQL is told the
/// type of a NULL too.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bool(bool),
    /// A list of texts, for PostgreSQL's `= ANY($n)`; SQLite has no arrays and refuses it.
    Texts(&'a [String]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<u8> for Arg<'_> {
    fn from(v: u8) -> Self {
        Arg::Int(Some(i64::from(v)))
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(Some(i64::from(v)))
    }
}

impl From<Option<u32>> for Arg<'_> {
    fn from(v: Option<u32>) -> Self {
        Arg::Int(v.map(i64::from))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

/// Text arguments from the owned strings of the domain: `String` and the identifiers.
macro_rules! text_args {
    ($($text:ty),*) => {$(
        impl<'a> From<&'a $text> for Arg<'a> {
            fn from(v: &'a $text) -> Self {
                Arg::Text(Some(v.as_ref()))
            }
        }

        impl<'a> From<&'a Option<$text>> for Arg<'a> {
            fn from(v: &'a Option<$text>) -> Self {
                Arg::Text(v.as_ref().map(|v| v.as_ref()))
            }
        }
    )*};
}

text_args!(
    String,
    platform::EventId,
    platform::LocationId,
    platform::BookingId,
    platform::UserId
);

/// The arguments of a statement, in placeholder order: `args![a, b]` is `&[Arg::from(a), …]`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::Arg::from($value)),*]
    };
}

/// One row of a result, read by column position.
pub enum Row<'r> {
    Sqlite(&'r sqlite::rusqlite::Row<'r>),
    #[cfg(feature = "postgres")]
    Postgres(&'r postgres::sqlx::postgres::PgRow),
}

impl Row<'_> {
    pub fn opt_text(&self, column: usize) -> Result<Option<String>, Error> {
        match self {
            Row::Sqlite(row) => Ok(row.get(column).map_err(sqlite::DbError::from)?),
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => pg::get(row, column),
        }
    }

    pub fn opt_i64(&self, column: usize) -> Result<Option<i64>, Error> {
        match self {
            Row::Sqlite(row) => Ok(row.get(column).map_err(sqlite::DbError::from)?),
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => pg::int(row, column),
        }
    }

    pub fn bool(&self, column: usize) -> Result<bool, Error> {
        match self {
            Row::Sqlite(row) => Ok(row.get(column).map_err(sqlite::DbError::from)?),
            #[cfg(feature = "postgres")]
            Row::Postgres(row) => pg::get(row, column),
        }
    }

    pub fn text(&self, column: usize) -> Result<String, Error> {
        self.opt_text(column)?.ok_or_else(|| null(column))
    }

    pub fn i64(&self, column: usize) -> Result<i64, Error> {
        self.opt_i64(column)?.ok_or_else(|| null(column))
    }

    /// An integer column read into the domain's type (counts are `u32` there, 64-bit integers
    /// in the database), refusing a value that does not fit.
    pub fn int<T: TryFrom<i64>>(&self, column: usize) -> Result<T, Error> {
        fits(column, self.i64(column)?)
    }

    pub fn opt_int<T: TryFrom<i64>>(&self, column: usize) -> Result<Option<T>, Error> {
        self.opt_i64(column)?.map(|v| fits(column, v)).transpose()
    }

    /// A text column holding one of a fixed set of values (a status, a role), read with `parse`:
    /// a value this program does not know is an error, never a default.
    pub fn stored<T>(
        &self,
        column: usize,
        what: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, Error> {
        platform::error::stored(what, &self.text(column)?, parse)
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

fn fits<T: TryFrom<i64>>(column: usize, value: i64) -> Result<T, Error> {
    T::try_from(value)
        .map_err(|_| Error::Internal(format!("column {column}: {value} is out of range")))
}

fn null(column: usize) -> Error {
    Error::Internal(format!("column {column} is NULL"))
}

/// A connection statements run on: in a transaction (a unit of work) or for a read.
pub trait Conn {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error>;

    /// Runs a query and reads each row it returns with `row`.
    async fn fetch<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        row: impl FnMut(&Row<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error>;

    /// The first row, if any.
    async fn fetch_optional<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        row: impl FnMut(&Row<'_>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        Ok(self.fetch(sql, args, row).await?.into_iter().next())
    }

    /// Records `message_id` in the inbox; true the first time, false for a redelivery.
    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Error>;

    /// Takes back a [`Conn::first_delivery`] whose message was not applied after all.
    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Error>;
}

/// What went wrong, in the backend's own words (each says whether a retry may help).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] sqlite::DbError),
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
    /// A bug or damaged data: a value that does not read, a write that found what it should not.
    #[error("database error: {0}")]
    Internal(String),
}

impl From<Error> for platform::StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Sqlite(e) => e.into(),
            #[cfg(feature = "postgres")]
            Error::Postgres(e) => e.into(),
            Error::Internal(_) => platform::StoreError::Internal(e.to_string()),
        }
    }
}

impl From<bus::unit::Corrupt> for Error {
    fn from(e: bus::unit::Corrupt) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<bus::unit::WouldWait> for Error {
    fn from(e: bus::unit::WouldWait) -> Self {
        Error::Internal(e.to_string())
    }
}

/// A unit of work over a connection in a transaction: the inbox is the connection's, and the
/// events the unit emits ([`SqlUnit::caused`]) are appended to the outbox at the commit, as its
/// last step. `state` is what a service's unit keeps beside it (for bookings, the seats a
/// batch of bookings has read and taken so far).
pub struct SqlUnit<C, S = ()> {
    pub conn: C,
    pub caused: Vec<Envelope>,
    pub state: S,
}

impl<C, S> SqlUnit<C, S> {
    pub fn new(conn: C, state: S) -> Self {
        Self {
            conn,
            caused: Vec::new(),
            state,
        }
    }
}

impl<C: Conn, S> bus::Unit for SqlUnit<C, S> {
    type Error = Error;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Error> {
        self.conn.first_delivery(message_id).await
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Error> {
        self.conn.forget_delivery(message_id).await
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), Error> {
        self.caused.push(event.clone());
        Ok(())
    }
}
