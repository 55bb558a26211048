//! [`Conn`] on SQLite through rusqlite. Every call is synchronous, so a unit's futures finish in
//! one poll (`bus::run_now`) on the writer thread.

use std::borrow::Cow;

use sqlite::rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use sqlite::rusqlite::{self, Connection, params_from_iter};
use sqlite::{DbError, inbox, outbox};

use crate::{Arg, Conn, Dialect, Error, Row, SqlUnit};

/// A SQLite connection: the writer's, inside its transaction, or a reader's.
pub struct SqliteConn<'c>(pub &'c Connection);

/// `$1` as SQLite spells a numbered placeholder, `?1` (SQLite would read `$1` as a parameter
/// *named* "1", numbered by first appearance rather than by its digits).
fn numbered(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Bool(v) => ToSqlOutput::Owned(Value::Integer(i64::from(v))),
            Arg::Int(None) | Arg::Text(None) => ToSqlOutput::Owned(Value::Null),
            Arg::Texts(_) => {
                let refused = "SQLite has no arrays: a list is bound on PostgreSQL only";
                return Err(rusqlite::Error::ToSqlConversionFailure(refused.into()));
            }
        })
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        let changed = self
            .0
            .prepare_cached(&numbered(sql))
            .and_then(|mut s| s.execute(params_from_iter(args)))
            .map_err(DbError::from)?;
        Ok(changed as u64)
    }

    async fn fetch<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut row: impl FnMut(&Row<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut statement = self
            .0
            .prepare_cached(&numbered(sql))
            .map_err(DbError::from)?;
        let mut rows = statement
            .query(params_from_iter(args))
            .map_err(DbError::from)?;
        let mut read = Vec::new();
        while let Some(r) = rows.next().map_err(DbError::from)? {
            read.push(row(&Row::Sqlite(r))?);
        }
        Ok(read)
    }

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Error> {
        Ok(inbox::first_delivery(self.0, message_id).map_err(DbError::from)?)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Error> {
        Ok(inbox::forget(self.0, message_id).map_err(DbError::from)?)
    }
}

/// Runs `work` on a unit over the writer's connection (inside `sqlite::Db::write`, whose
/// transaction it is), then appends the events the unit caused to the outbox. `work` drives the
/// rules with `bus::run_now`.
pub fn in_writer<S, T>(
    conn: &Connection,
    state: S,
    work: impl FnOnce(&mut SqlUnit<SqliteConn<'_>, S>) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut unit = SqlUnit::new(SqliteConn(conn), state);
    let done = work(&mut unit)?;
    for event in &unit.caused {
        outbox::append(conn, event).map_err(DbError::from)?;
    }
    Ok(done)
}

/// Runs `work` on one of `db`'s read connections (see `sqlite::Db::read`).
pub async fn on_reader<T, F>(db: &sqlite::Db, work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&mut SqliteConn<'_>) -> Result<T, Error> + Send + 'static,
{
    db.read(move |conn| Ok(work(&mut SqliteConn(conn)))).await?
}
