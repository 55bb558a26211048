//! [`Conn`] on SQLite through rusqlite. Every call is synchronous, so a unit's futures finish in
//! one poll (`bus::run_now`) on the writer thread.

use sqlite::rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use sqlite::rusqlite::{self, Connection, Statement};
use sqlite::{DbError, inbox, outbox};

use crate::{Arg, Conn, Dialect, Error, Row, SqlUnit};

/// A SQLite connection: the writer's, inside its transaction, or a reader's.
pub struct SqliteConn<'c>(pub &'c Connection);

/// Binds `args` to a statement written with `$1`, `$2` … placeholders. SQLite reads `$1` as a
/// parameter *named* "$1" and numbers named parameters by first appearance, not by their digits
/// (`SET a = $2 WHERE id = $1` numbers `$2` first), so each is bound by its name. Rewriting the
/// statement to `?1` instead would cost a copy of its text on every call.
fn bind(statement: &mut Statement<'_>, args: &[Arg<'_>]) -> Result<(), Error> {
    let count = statement.parameter_count();
    if count != args.len() {
        let wrong = format!(
            "a statement with {count} placeholders got {} values",
            args.len()
        );
        return Err(Error::Internal(wrong));
    }
    for index in 1..=count {
        let named = statement.parameter_name(index);
        let position = named
            .and_then(|n| n.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=count).contains(n));
        let Some(position) = position else {
            let wrong = format!("placeholder {named:?} is not one of $1 … ${count}");
            return Err(Error::Internal(wrong));
        };
        statement
            .raw_bind_parameter(index, args[position - 1])
            .map_err(DbError::from)?;
    }
    Ok(())
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
        let mut statement = self.0.prepare_cached(sql).map_err(DbError::from)?;
        bind(&mut statement, args)?;
        let changed = statement.raw_execute().map_err(DbError::from)?;
        Ok(changed as u64)
    }

    async fn fetch<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut row: impl FnMut(&Row<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut statement = self.0.prepare_cached(sql).map_err(DbError::from)?;
        bind(&mut statement, args)?;
        let mut rows = statement.raw_query();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{args, now};

    fn select(sql: &str, args: &[Arg<'_>]) -> Result<Vec<String>, Error> {
        let conn = Connection::open_in_memory().expect("an in-memory database");
        now(SqliteConn(&conn).fetch(sql, args, |r| r.text(0)))
    }

    #[test]
    fn placeholders_are_bound_by_their_digits_in_any_order() {
        // SQLite numbers `$2` first here; bound by position, this would read "a-b-a".
        let read = select("SELECT $2 || '-' || $1 || '-' || $2", args!["a", "b"]);
        assert_eq!(read.expect("bound"), ["b-a-b"]);
    }

    #[test]
    fn a_statement_and_its_values_that_do_not_match_are_refused() {
        let cases: [(&str, &[Arg<'_>]); 4] = [
            ("SELECT $1 || $2", args!["a"]),
            ("SELECT $1", args!["a", "b"]),
            ("SELECT $1 || $3", args!["a", "b"]),
            ("SELECT ?1", args!["a"]),
        ];
        for (sql, args) in cases {
            let refused = select(sql, args);
            assert!(
                matches!(refused, Err(Error::Internal(_))),
                "{sql}: {refused:?}"
            );
        }
    }
}
