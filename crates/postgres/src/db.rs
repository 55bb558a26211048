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
/// How long the server lets one of our sessions sit idle inside a transaction before it ends the
/// session. Our transactions send their statements back to back, so a pause this long means the
/// client is gone or cut off by the network; until then its row locks (a hot event's seats)
/// would hold every other replica's bookings of that event, for as long as TCP takes to notice.
const IDLE_IN_TRANSACTION: &str = "5s";
/// Key of the transaction-level advisory lock that lets one process at a time run migrations
/// (concurrent `CREATE TABLE IF NOT EXISTS` of the same table can fail on PostgreSQL).
const MIGRATION_LOCK: i64 = 0x6d79_6576_656e_7473; // "myevents"

#[derive(Debug, Clone, thiserror::Error)]
pub enum PgError {
    /// The database cannot be used right now (down, restarting, out of resources, a conflict
    /// between transactions that a retry resolves); the caller may try again.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A write hit a unique or exclusion constraint.
    #[error("database conflict: {0}")]
    Conflict(String),
    /// A value the database cannot hold (too long, out of range, a NUL in a text).
    #[error("database refused a value: {0}")]
    Invalid(String),
    /// A bug or damaged data: a constraint the code should have kept, a value it cannot read.
    #[error("database error: {0}")]
    Internal(String),
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
}

impl From<sqlx::Error> for PgError {
    fn from(e: sqlx::Error) -> Self {
        let detail = e.to_string();
        match &e {
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => by_sqlstate(&code, detail),
                None => PgError::Internal(detail),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => PgError::Unavailable(detail),
            // Decoding a column, a row expected and missing, a statement this program got wrong.
            _ => PgError::Internal(detail),
        }
    }
}

impl PgError {
    /// The same kind of error, its detail prefixed with where it happened.
    pub fn context(self, what: impl std::fmt::Display) -> PgError {
        match self {
            PgError::Unavailable(d) => PgError::Unavailable(format!("{what}: {d}")),
            PgError::Conflict(d) => PgError::Conflict(format!("{what}: {d}")),
            PgError::Invalid(d) => PgError::Invalid(format!("{what}: {d}")),
            PgError::Internal(d) => PgError::Internal(format!("{what}: {d}")),
            PgError::Url(d) => PgError::Url(format!("{what}: {d}")),
        }
    }
}

/// The kind of a refusal, by its SQLSTATE (PostgreSQL manual, appendix A).
fn by_sqlstate(code: &str, detail: String) -> PgError {
    let class = code.get(..2).unwrap_or("");
    match (class, code) {
        // Connection lost, the server shutting down or starting, out of disk, memory or
        // connections, an I/O error, a statement timeout, a standby that cannot write, and the
        // conflicts between transactions that a retry resolves.
        ("08" | "53" | "58", _)
        | (_, "57P01" | "57P02" | "57P03" | "57014" | "25006" | "40001" | "40P01" | "55P03") => {
            PgError::Unavailable(detail)
        }
        (_, "23505" | "23P01") => PgError::Conflict(detail),
        // Data exceptions: a value the client sent that a column cannot hold. The domain checks
        // the rules of the product; the database's own limits are met here.
        ("22", _) => PgError::Invalid(detail),
        // CHECK, NOT NULL and foreign keys guard what the domain already checked (seats never
        // below zero): a client cannot reach them, so hitting one is a bug.
        _ => PgError::Internal(detail),
    }
}

impl From<PgError> for platform::StoreError {
    fn from(e: PgError) -> Self {
        let detail = e.to_string();
        match e {
            PgError::Unavailable(_) => platform::StoreError::Unavailable(detail),
            PgError::Conflict(_) => platform::StoreError::Conflict(detail),
            PgError::Invalid(_) => platform::StoreError::Invalid(detail),
            PgError::Internal(_) | PgError::Url(_) => platform::StoreError::Internal(detail),
        }
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
            .options([
                ("search_path", options.schema.as_str()),
                ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION),
            ]);
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
        let inner = Arc::new(Inner {
            pool,
            connect,
            name,
            schema: options.schema,
            migrations: options.migrations,
            migrated: OnceCell::new(),
            committed: Arc::new(Notify::new()),
        });
        // The schema is the service's name (see the crate's comment).
        platform::metrics::watch_pool(&inner.schema, &inner);
        Ok(Pg { inner })
    }

    /// Creates the schema and runs the migrations, if this handle has not done so yet.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.inner
            .migrated
            .get_or_try_init(|| self.run_migrations())
            .await
            .map(|_| ())
            // A database that is down at start is unavailable, not broken: the kind stays.
            .map_err(|e| {
                PgError::from(e).context(format!("{}: cannot create the tables", self.inner.name))
            })
    }

    /// Runs the migrations unless this schema has had exactly these already. Skipping matters
    /// beyond the time saved: `ALTER TABLE` and `CREATE INDEX` lock their table even when there
    /// is nothing to do, so a replica starting beside one that serves could deadlock with its
    /// transactions.
    async fn run_migrations(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        let schema = quoted(&self.inner.schema);
        let digest = format!("{:016x}", fnv1a(&self.inner.migrations.join("\n;\n")));
        let applied: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("{schema}.schema_migrations"))
            .fetch_one(&mut *tx)
            .await?;
        if applied.is_some() {
            // The schema name is this program's own, and quoted.
            let seen = format!(
                "SELECT EXISTS (SELECT 1 FROM {schema}.schema_migrations WHERE digest = $1)"
            );
            let seen: bool = sqlx::query_scalar(AssertSqlSafe(seen))
                .bind(&digest)
                .fetch_one(&mut *tx)
                .await?;
            if seen {
                return tx.commit().await;
            }
        }
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut *tx)
        .await?;
        for statement in &self.inner.migrations {
            sqlx::raw_sql(*statement).execute(&mut *tx).await?;
        }
        let record = format!(
            "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                 digest TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO {schema}.schema_migrations (digest) VALUES ('{digest}')
                 ON CONFLICT DO NOTHING"
        );
        sqlx::raw_sql(AssertSqlSafe(record))
            .execute(&mut *tx)
            .await?;
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

impl platform::metrics::Pool for Inner {
    fn pool_use(&self) -> platform::metrics::PoolUse {
        let open = u64::from(self.pool.size());
        let idle = self.pool.num_idle() as u64;
        platform::metrics::PoolUse {
            in_use: open.saturating_sub(idle),
            idle,
            max: Some(u64::from(self.pool.options().get_max_connections())),
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

/// Reads a text column that holds one of a fixed set of values (a status, a role) with
/// `parse`: a value this program does not know is an error, never a default.
pub fn stored<T>(
    row: &PgRow,
    column: &str,
    what: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    let value: String = row.try_get(column)?;
    platform::error::stored(what, &value, parse).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// FNV-1a, 64 bits: a digest of the migrations that stays the same from build to build.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
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
