use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Notify, oneshot};

/// Most requests one transaction takes; bounds the time a batch holds the write lock.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer beyond this are refused (503) rather than queued without end.
const QUEUE_DEPTH: usize = 16 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// SQLite cannot be used right now: busy, out of disk or memory, an I/O error, a file it may
    /// not write. Nothing was written; the caller may try again.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A write hit a unique key.
    #[error("database conflict: {0}")]
    Conflict(String),
    /// A bug or damaged data: a constraint the code should have kept, a value it cannot read.
    #[error("database error: {0}")]
    Internal(String),
    #[error("database is shutting down")]
    Closed,
    #[error("database is overloaded")]
    Overloaded,
    /// The writer could not start a transaction (disk full, file gone); nothing was written.
    #[error("the write could not be carried out")]
    NotCommitted,
}

impl From<DbError> for platform::StoreError {
    fn from(e: DbError) -> Self {
        let detail = e.to_string();
        match e {
            DbError::Conflict(_) => platform::StoreError::Conflict(detail),
            DbError::Internal(_) => platform::StoreError::Internal(detail),
            DbError::Unavailable(_)
            | DbError::Closed
            | DbError::Overloaded
            | DbError::NotCommitted => platform::StoreError::Unavailable(detail),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as Code;
        let detail = e.to_string();
        let Some(code) = e.sqlite_error() else {
            // Not SQLite's refusal but this program's: a column it cannot convert (a damaged
            // or foreign value), a row it expected and did not find, a misused statement.
            return DbError::Internal(detail);
        };
        match code.code {
            Code::DatabaseBusy
            | Code::DatabaseLocked
            | Code::OutOfMemory
            | Code::SystemIoFailure
            | Code::DiskFull
            | Code::CannotOpen
            | Code::FileLockingProtocolFailed
            | Code::ReadOnly
            | Code::PermissionDenied
            | Code::OperationInterrupted => DbError::Unavailable(detail),
            Code::ConstraintViolation
                if matches!(
                    code.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                DbError::Conflict(detail)
            }
            // CHECK, NOT NULL and foreign keys guard what the domain already checked (seats
            // never below zero): a client cannot reach them, so hitting one is a bug. So are a
            // corrupt file, a schema this program did not make, and its own misuse.
            _ => DbError::Internal(detail),
        }
    }
}

/// Reads a text column that holds one of a fixed set of values (a status, a role) with
/// `parse`: a value this program does not know is an error, never a default.
pub fn stored<T>(
    row: &rusqlite::Row<'_>,
    column: usize,
    what: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let value: String = row.get(column)?;
    platform::error::stored(what, &value, parse).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// Schema statements, run in order on every start; each must be idempotent
    /// (`CREATE TABLE IF NOT EXISTS …`), so starting twice is harmless. SQLite has no
    /// `ADD COLUMN IF NOT EXISTS`: a statement that is one `ALTER TABLE … ADD COLUMN` is
    /// skipped when the column is there already.
    pub migrations: Vec<&'static str>,
    pub readers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            migrations: Vec::new(),
            readers: 4,
        }
    }
}

/// Runs one schema statement of [`Options::migrations`].
fn migrate(conn: &Connection, statement: &str) -> Result<(), DbError> {
    match conn.execute_batch(statement) {
        Err(e) if is_add_column(statement) && e.to_string().contains("duplicate column name") => {
            Ok(())
        }
        result => result.map_err(|e| DbError::Internal(format!("migration failed: {e}"))),
    }
}

fn is_add_column(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    words.len() >= 6
        && words[..2] == ["ALTER", "TABLE"]
        && words[3..5] == ["ADD", "COLUMN"]
        && !statement.trim_end().trim_end_matches(';').contains(';')
}

/// The outcome of a batch's COMMIT, handed to every request of the batch.
type CommitResult = Result<(), DbError>;
pub(crate) type Reply = Box<dyn FnOnce(CommitResult) + Send>;
pub(crate) type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// A SQLite database file with a group-commit writer thread and a pool of read connections.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<SyncSender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// Read connections taken from `readers` (or opened beside them) and not yet given back.
    reading: AtomicU64,
    committed: Arc<Notify>,
}

impl Db {
    pub fn open(path: &Path, options: Options) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| DbError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer_conn = open_connection(path, false)?;
        // A checkpoint copies each page changed since the last one back into the database
        // file; a longer interval (32 MiB of log) copies a hot page once instead of many times.
        writer_conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 8192;")?;
        for statement in &options.migrations {
            migrate(&writer_conn, statement)?;
        }
        let readers = (0..options.readers.max(1))
            .map(|_| open_connection(path, true))
            .collect::<Result<Vec<_>, _>>()?;

        let committed = Arc::new(Notify::new());
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        let notify = committed.clone();
        let name = format!(
            "db-{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("db")
        );
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || writer_loop(writer_conn, rx, notify))
            .map_err(|e| DbError::Internal(format!("cannot start writer thread: {e}")))?;

        let inner = Arc::new(Inner {
            path: path.to_owned(),
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers: Mutex::new(readers),
            reading: AtomicU64::new(0),
            committed,
        });
        // Named after the file: each service's database is `<service>.db`.
        let service = path.file_stem().and_then(|s| s.to_str()).unwrap_or("db");
        platform::metrics::watch_pool(service, &inner);
        Ok(Db { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Woken after every commit; the outbox relay and the embedded log's consumers wait on it.
    pub fn committed(&self) -> Arc<Notify> {
        self.inner.committed.clone()
    }

    /// Runs `work` inside the next write transaction and answers once that transaction is
    /// durable. An `Err` from `work` rolls back its own writes only; a failed COMMIT fails every
    /// request of the batch.
    ///
    /// `work` runs on the writer thread: it must not block on anything but the database. It
    /// runs in the caller's span, so that an event it appends to the outbox carries the
    /// caller's trace (`platform::telemetry::traceparent`), as it would on the caller's thread.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let span = tracing::Span::current();
        let job: Job = Box::new(move |conn: &Connection| -> Reply {
            let outcome = span.in_scope(|| run_in_savepoint(conn, work));
            Box::new(move |commit: CommitResult| {
                let answer = match (commit, outcome) {
                    (Ok(()), outcome) => outcome,
                    (Err(e), _) => Err(E::from(e)),
                };
                // The caller may have gone; the work is committed either way.
                let _ = tx.send(answer);
            })
        });
        self.submit(job)?;
        rx.await.unwrap_or(Err(E::from(DbError::NotCommitted)))
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), DbError> {
        let guard = self.inner.writer.lock().map_err(|_| DbError::Closed)?;
        let sender = guard.as_ref().ok_or(DbError::Closed)?;
        sender.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => DbError::Overloaded,
            TrySendError::Disconnected(_) => DbError::Closed,
        })
    }

    /// Runs `work` on a read connection, off the async runtime. Readers see every committed
    /// write and never wait for the writer (WAL).
    pub async fn read<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = work(&conn).map_err(DbError::from);
            inner.give_back_reader(conn);
            result
        })
        .await
        .map_err(|e| DbError::Internal(format!("reader task failed: {e}")))?
    }

    /// Why this database cannot be read right now, if it cannot (for `/health/ready`).
    pub async fn check(&self) -> Result<(), String> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", self.path().display()))
    }

    /// Stops taking writes, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        self.inner.stop_writer();
    }
}

impl Drop for Inner {
    /// The last handle gone: the writer finishes what is queued, and we wait for it, so that a
    /// process that drops its stores before exiting has written everything it answered for.
    fn drop(&mut self) {
        self.stop_writer();
    }
}

impl Inner {
    fn stop_writer(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        if let Some(thread) = self.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = thread.join();
        }
    }

    fn take_reader(&self) -> Result<Connection, DbError> {
        let pooled = self.readers.lock().map_err(|_| DbError::Closed)?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            // More readers at once than pooled: open one more; it joins the pool afterwards.
            None => open_connection(&self.path, true)?,
        };
        self.reading.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    fn give_back_reader(&self, conn: Connection) {
        self.reading.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 16
        {
            pool.push(conn);
        }
    }
}

/// The read connections; the writer is one more, always open, and not counted.
impl platform::metrics::Pool for Inner {
    fn pool_use(&self) -> platform::metrics::PoolUse {
        platform::metrics::PoolUse {
            in_use: self.reading.load(Ordering::Relaxed),
            idle: self.readers.lock().map_or(0, |r| r.len() as u64),
            max: None,
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, DbError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    // Another process may hold the write lock briefly (a separate service on the same
    // embedded log, or `myevents admin create` beside a running server).
    conn.busy_timeout(Duration::from_secs(5))?;
    // FULL: a commit is on disk before anyone is told it happened (SPEC invariant 2).
    // A larger page cache keeps hot B-tree pages (the inventory row, the index tails) in memory.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(crate) fn run_in_savepoint<T, E, F>(conn: &Connection, work: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&Connection) -> Result<T, E>,
{
    run(conn, "SAVEPOINT job")?;
    let outcome = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(E::from(DbError::Internal("write job panicked".into()))));
    let end = if outcome.is_ok() {
        run(conn, "RELEASE job")
    } else {
        run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"))
    };
    match end {
        Ok(()) => outcome,
        Err(e) => Err(E::from(e)),
    }
}

/// Runs a transaction-control statement, prepared once per connection: they run several times
/// per request, and parsing them each time showed in profiles.
fn run(conn: &Connection, sql: &str) -> Result<(), DbError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn writer_loop(conn: Connection, jobs: Receiver<Job>, committed: Arc<Notify>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run(&conn, "BEGIN IMMEDIATE") {
            // Dropping the batch drops its reply channels: each caller gets NotCommitted.
            tracing::error!(error = %e, "cannot begin a write transaction");
            continue;
        }
        let replies: Vec<Reply> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = run(&conn, "COMMIT").inspect_err(|e| {
            let _ = run(&conn, "ROLLBACK");
            tracing::error!(error = %e, "write batch failed to commit");
        });
        for reply in replies {
            reply(commit.clone());
        }
        committed.notify_waiters();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A database with one table `t (v INTEGER NOT NULL UNIQUE)`.
    pub(crate) fn open(dir: &tempfile::TempDir) -> Db {
        Db::open(
            &dir.path().join("t.db"),
            Options {
                migrations: vec!["CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL UNIQUE)"],
                readers: 2,
            },
        )
        .unwrap()
    }

    #[test]
    fn sqlite_errors_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT UNIQUE, n INTEGER CHECK (n >= 0));
             INSERT INTO k VALUES (1, 'a', 0);",
        )
        .unwrap();
        let kind = |c: &Connection, sql: &str| DbError::from(c.execute(sql, []).unwrap_err());
        let unique = kind(&c, "INSERT INTO k VALUES (2, 'a', 0)");
        assert!(matches!(unique, DbError::Conflict(_)), "{unique:?}");
        let key = kind(&c, "INSERT INTO k VALUES (1, 'b', 0)");
        assert!(matches!(key, DbError::Conflict(_)), "{key:?}");
        let check = kind(&c, "INSERT INTO k VALUES (3, 'c', -1)");
        assert!(matches!(check, DbError::Internal(_)), "{check:?}");
        let unreadable: rusqlite::Error = c
            .query_row("SELECT v FROM k", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(matches!(DbError::from(unreadable), DbError::Internal(_)));

        // Another connection holds the write lock and this one may not wait: busy.
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        let busy = kind(&other, "INSERT INTO k VALUES (4, 'd', 0)");
        assert!(matches!(busy, DbError::Unavailable(_)), "{busy:?}");
        for (error, unavailable) in [(busy, true), (unique, false)] {
            let store = platform::StoreError::from(error);
            assert_eq!(
                matches!(store, platform::StoreError::Unavailable(_)),
                unavailable
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_request_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let mut tasks = Vec::new();
        for v in [1, 2, 2, 3] {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                        .map_err(DbError::from)
                })
                .await
            }));
        }
        let mut failures = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failures += 1;
            }
        }
        assert_eq!(failures, 1, "the duplicate 2 fails, the rest commit");
        let count: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(count, 3);
    }

    #[tokio::test]
    async fn reopening_runs_migrations_again_harmlessly_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        db.write(|c| {
            c.execute("INSERT INTO t (v) VALUES (7)", [])
                .map_err(DbError::from)
        })
        .await
        .unwrap();
        db.close();
        let db = open(&dir);
        let v: i64 = db
            .read(|c| c.query_row("SELECT v FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(v, 7);
        assert!(matches!(
            {
                db.close();
                db.write(|_| Ok::<_, DbError>(())).await
            },
            Err(DbError::Closed)
        ));
    }

    /// A column added by a later version is added to an existing database once; on the next
    /// start its `ADD COLUMN` is skipped, while any other failing migration still fails.
    #[tokio::test]
    async fn an_added_column_is_added_once_and_other_failures_still_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let with = |migrations: Vec<&'static str>| {
            Db::open(
                &path,
                Options {
                    migrations,
                    ..Options::default()
                },
            )
        };
        let create = "CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL)";
        let add = "ALTER TABLE t ADD COLUMN note TEXT;";
        with(vec![create]).unwrap().close();
        for _ in 0..2 {
            let db = with(vec![create, add]).unwrap();
            db.write(|c| {
                c.execute("INSERT INTO t (v, note) VALUES (1, 'x')", [])
                    .map_err(DbError::from)
            })
            .await
            .unwrap();
            db.close();
        }
        let broken = "ALTER TABLE missing ADD COLUMN note TEXT";
        assert!(matches!(with(vec![broken]), Err(DbError::Internal(_))));
        let two = "ALTER TABLE t ADD COLUMN note TEXT; SELECT 1";
        assert!(matches!(with(vec![two]), Err(DbError::Internal(_))));
    }
}
