//! [`Conn`] on PostgreSQL through sqlx.

use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, AssertSqlSafe, PgConnection, Row as _};
use postgres::{PgError, inbox};

use crate::{Arg, Conn, Dialect, Error, Row};

/// A PostgreSQL connection: a transaction's (a unit of work, committed with `Pg::commit` and
/// the unit's `caused`) or a pooled one for a read.
pub struct PgConn<'c>(pub &'c mut PgConnection);

fn query<'q>(sql: &'q str, args: &[Arg<'q>]) -> postgres::PgQuery<'q> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match *arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::Texts(v) => query.bind(v),
        };
    }
    query
}

impl Conn for PgConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        let done = query(sql, args)
            .execute(&mut *self.0)
            .await
            .map_err(PgError::from)?;
        Ok(done.rows_affected())
    }

    async fn fetch<T>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
        mut row: impl FnMut(&Row<'_>) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let rows = query(sql, args)
            .fetch_all(&mut *self.0)
            .await
            .map_err(PgError::from)?;
        rows.iter().map(|r| row(&Row::Postgres(r))).collect()
    }

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Error> {
        Ok(inbox::first_delivery(self.0, message_id)
            .await
            .map_err(PgError::from)?)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Error> {
        self.execute(
            "DELETE FROM inbox WHERE message_id = $1",
            crate::args![message_id],
        )
        .await?;
        Ok(())
    }
}

pub(crate) fn get<'r, T>(row: &'r PgRow, column: usize) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    Ok(row.try_get(column).map_err(PgError::from)?)
}

/// An integer column of any width (`SELECT 1` is a 32-bit integer, the tables' counts 64-bit).
pub(crate) fn int(row: &PgRow, column: usize) -> Result<Option<i64>, Error> {
    match row.try_get::<Option<i64>, _>(column) {
        Ok(v) => Ok(v),
        Err(_) => Ok(get::<Option<i32>>(row, column)?.map(i64::from)),
    }
}

/// A connection of `pg`'s pool, for reads outside a transaction.
pub async fn acquire(
    pg: &postgres::Pg,
) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, Error> {
    let pool = pg.pool().await?;
    Ok(pool.acquire().await.map_err(PgError::from)?)
}
