use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use contracts::Envelope;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Postgres, Row, Transaction};
use tokio::sync::{Notify, OnceCell};

use crate::outbox;

/// A statement with its parameters bound.
pub type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// How long a request waits for a connection before it is answered 503: long enough for a busy
/// pool, short enough that a client is not left hanging while the database is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Key of the transaction-level advisory lock that lets one process at a time run migrations
/// (concurrent `CREATE TABLE IF NOT EXISTS` of the same table can fail on PostgreSQL).
const MIGRATION_LOCK: i64 = 0x6d79_6576_656e_7473; // "myevents"

#[derive(Debug, Clone, thiserror::Error)]
pub enum PgError {
    #[error("database error: {0}")]
    Sql(String),
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        PgError::Sql(e.to_string())
    }
}

impl From<PgError> for platform::StoreError {
    fn from(e: PgError) -> Self {
        platform::StoreError::Unavailable(e.to_string())
    }
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// The schema the service's tables live in (created if missing).
    pub schema: String,
    /// Schema statements, run in order on first use and by [`Pg::migrate`]; each must be
    /// idempotent (`CREATE TABLE IF NOT EXISTS …`), so starting twice is harmless.
    pub migrations: Vec<&'static str>,
    pub max_connections: u32,
}

/// A PostgreSQL database of one service: a pool and the service's schema.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    connect: PgConnectOptions,
    /// `host:port/database`, for messages (never the password).
    name: String,
    schema: String,
    migrations: Vec<&'static str>,
    /// Set once the migrations have run; until then every use tries them first, so a service
    /// that started while its database was down gets its tables as soon as it comes back.
    migrated: OnceCell<()>,
    committed: Arc<Notify>,
}

impl Pg {
    /// Prepares a pool without connecting: a service starts while its database is down, says so
    /// on `/health/ready`, and answers 503 until it is back. The pool reconnects by itself.
    pub fn connect_lazy(url: &str, options: Options) -> Result<Pg, PgError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| PgError::Url(e.to_string()))?
            // Unqualified table names are the service's own.
            .options([("search_path", options.schema.as_str())]);
        let name = format!(
            "postgres {}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect.clone());
        Ok(Pg {
            inner: Arc::new(Inner {
                pool,
                connect,
                name,
                schema: options.schema,
                migrations: options.migrations,
                migrated: OnceCell::new(),
                committed: Arc::new(Notify::new()),
            }),
        })
    }

    /// Creates the schema and runs the migrations, if this handle has not done so yet.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.inner
            .migrated
            .get_or_try_init(|| self.run_migrations())
            .await
            .map(|_| ())
            .map_err(|e| {
                PgError::Sql(format!(
                    "{}: cannot create the tables: {e}",
                    self.inner.name
                ))
            })
    }

    async fn run_migrations(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let schema = quoted(&self.inner.schema);
        // The schema name is this program's own, and quoted.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut *tx)
        .await?;
        for statement in &self.inner.migrations {
            sqlx::raw_sql(*statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// The pool, once the schema is in place.
    pub async fn pool(&self) -> Result<&PgPool, PgError> {
        self.migrate().await?;
        Ok(&self.inner.pool)
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, PgError> {
        Ok(self.pool().await?.begin().await?)
    }

    /// Appends the events `tx` caused to the outbox, as its last step (see [`crate::outbox`]
    /// for why last), commits, and wakes the outbox relay.
    pub async fn commit(
        &self,
        mut tx: Transaction<'static, Postgres>,
        caused: &[Envelope],
    ) -> Result<(), PgError> {
        outbox::append(&mut tx, caused).await?;
        tx.commit().await?;
        if !caused.is_empty() {
            self.inner.committed.notify_waiters();
        }
        Ok(())
    }

    /// Runs a query outside any transaction and reads its row, if any, with `row`.
    pub async fn fetch_optional<T>(
        &self,
        query: PgQuery<'_>,
        row: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<Option<T>, PgError> {
        let found = query.fetch_optional(self.pool().await?).await?;
        Ok(found.as_ref().map(row).transpose()?)
    }

    /// Runs a query outside any transaction and reads its rows with `row`.
    pub async fn fetch_all<T>(
        &self,
        query: PgQuery<'_>,
        row: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, PgError> {
        let rows = query.fetch_all(self.pool().await?).await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// Woken after every commit made through [`Pg::commit`]; the outbox relay waits on it.
    pub fn committed(&self) -> Arc<Notify> {
        self.inner.committed.clone()
    }

    /// Why this database cannot be used right now, if it cannot (for `/health/ready`).
    pub async fn check(&self) -> Result<(), String> {
        let name = &self.inner.name;
        let error = match self.pool().await {
            Ok(pool) => match sqlx::query("SELECT 1").execute(pool).await {
                Ok(_) => return Ok(()),
                Err(e) => format!("{name}: {e}"),
            },
            // Names the database already.
            Err(e) => e.to_string(),
        };
        // The pool retries a refused connection until its timeout and then only says that it
        // timed out; one direct attempt tells the operator why.
        match tokio::time::timeout(
            ACQUIRE_TIMEOUT,
            PgConnection::connect_with(&self.inner.connect),
        )
        .await
        {
            Ok(Err(e)) => Err(format!("{name}: {e}")),
            _ => Err(error),
        }
    }
}

/// Reads an integer column into the domain's type (PostgreSQL has no unsigned integers, so every
/// count is a BIGINT here), refusing a value that does not fit.
pub fn int<T: TryFrom<i64>>(row: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value).map_err(|_| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("{value} is out of range").into(),
    })
}

/// A schema name as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Drops schema `name` of the database at `url` and everything in it, if it exists.
pub async fn drop_schema(url: &str, name: &str) -> Result<(), PgError> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quoted(name)
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// Puts schema `replacement` in the place of `schema`, which is kept as `kept`, in one
/// transaction: a reader sees the old schema or the new one, never neither.
pub async fn replace_schema(
    url: &str,
    schema: &str,
    replacement: &str,
    kept: &str,
) -> Result<(), PgError> {
    let mut conn = PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER SCHEMA {} RENAME TO {}; ALTER SCHEMA {} RENAME TO {}",
        quoted(schema),
        quoted(kept),
        quoted(replacement),
        quoted(schema)
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// A statement assembled at run time from this program's own constants (column lists, fixed
/// conditions), never from input: values always go in as parameters.
pub fn query<'q>(sql: String) -> PgQuery<'q> {
    sqlx::query(AssertSqlSafe(sql))
}
