//! [`Db`]: a service's SQL database, SQLite or PostgreSQL, and the two ways to use it, [`read!`]
//! and [`write!`].
//!
//! Why macros: the work handed to a database is an `async` expression over a connection or a
//! unit that borrows it. As a closure, such work cannot be proven `Send` for every lifetime of
//! that borrow, which PostgreSQL's futures must be; written out where it is used, its types are
//! concrete and the proof is the compiler's usual one. SQLite runs the same expression on its
//! writer thread or a reader, where `bus::run_now` finishes it in one poll.
//!
//! [`read!`]: crate::read
//! [`write!`]: crate::write

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::Error;

/// A service's SQL database.
#[derive(Clone)]
pub enum Db {
    Sqlite(sqlite::Db),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Pg),
}

impl Db {
    /// A SQLite file, its schema brought up to date.
    pub fn sqlite(path: &std::path::Path, options: sqlite::Options) -> Result<Db, sqlite::DbError> {
        Ok(Db::Sqlite(sqlite::Db::open(path, options)?))
    }

    /// A PostgreSQL schema, prepared without connecting (see `postgres::Pg::connect_lazy`).
    #[cfg(feature = "postgres")]
    pub fn postgres(url: &str, options: postgres::Options) -> Result<Db, postgres::PgError> {
        Ok(Db::Postgres(postgres::Pg::connect_lazy(url, options)?))
    }

    /// Creates PostgreSQL's tables now rather than on first use (SQLite's are made on open).
    pub async fn migrate(&self) -> Result<(), Error> {
        match self {
            Db::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => Ok(pg.migrate().await?),
        }
    }

    /// The outbox the relay publishes from.
    pub fn outbox(&self) -> Arc<dyn bus::Outbox> {
        match self {
            Db::Sqlite(db) => Arc::new(bus::SqliteOutbox(db.clone())),
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => Arc::new(postgres::PgOutbox::new(pg.clone())),
        }
    }

    /// Woken after commits: every commit on SQLite, those that emit events on PostgreSQL.
    pub fn committed(&self) -> Arc<Notify> {
        match self {
            Db::Sqlite(db) => db.committed(),
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => pg.committed(),
        }
    }

    /// Why this database cannot be used right now, if it cannot (for `/health/ready`).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Db::Sqlite(db) => db.check().await,
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => pg.check().await,
        }
    }
}

/// Finishes a SQLite future in one poll (see `bus::run_now`).
pub fn now<T>(work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    bus::run_now(work)?
}

/// `read!(db, |conn| work)`: runs `work`, an `async` expression over `conn: &mut impl Conn`, on
/// a read connection of `db` (a `&Db`). On SQLite the expression is moved to a reader thread,
/// so what it uses must be owned (`let id = id.to_owned();` before it).
#[cfg(feature = "postgres")]
#[macro_export]
macro_rules! read {
    ($db:expr, |$conn:ident| $work:expr) => {
        match $db {
            $crate::Db::Sqlite(db) => $crate::on_reader(db, move |$conn| $crate::now($work)).await,
            $crate::Db::Postgres(pg) => match $crate::acquire(pg).await {
                Ok(mut pooled) => {
                    let $conn = &mut $crate::PgConn(&mut pooled);
                    $work.await
                }
                Err(e) => Err(e),
            },
        }
    };
}

#[cfg(not(feature = "postgres"))]
#[macro_export]
macro_rules! read {
    ($db:expr, |$conn:ident| $work:expr) => {
        match $db {
            $crate::Db::Sqlite(db) => $crate::on_reader(db, move |$conn| $crate::now($work)).await,
        }
    };
}

/// `write!(db, state, |unit| work)`: runs `work`, an `async` expression over
/// `unit: &mut SqlUnit<impl Conn, S>` made with `state`, in one transaction of `db` (a `&Db`),
/// and commits it with the events it caused. On SQLite the expression runs in the writer's next
/// transaction (see `sqlite::Db::write`), so what it uses must be owned.
#[cfg(feature = "postgres")]
#[macro_export]
macro_rules! write {
    ($db:expr, $state:expr, |$unit:ident| $work:expr) => {
        match $db {
            $crate::Db::Sqlite(db) => {
                let state = $state;
                db.write(move |conn| $crate::in_writer(conn, state, |$unit| $crate::now($work)))
                    .await
            }
            $crate::Db::Postgres(pg) => match pg.begin().await {
                Ok(mut tx) => {
                    let mut unit = $crate::SqlUnit::new($crate::PgConn(&mut tx), $state);
                    let done = {
                        let $unit = &mut unit;
                        $work.await
                    };
                    let caused = unit.caused;
                    match done {
                        Ok(done) => match pg.commit(tx, &caused).await {
                            Ok(()) => Ok(done),
                            Err(e) => Err($crate::Error::from(e)),
                        },
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err($crate::Error::from(e)),
            },
        }
    };
}

#[cfg(not(feature = "postgres"))]
#[macro_export]
macro_rules! write {
    ($db:expr, $state:expr, |$unit:ident| $work:expr) => {
        match $db {
            $crate::Db::Sqlite(db) => {
                let state = $state;
                db.write(move |conn| $crate::in_writer(conn, state, |$unit| $crate::now($work)))
                    .await
            }
        }
    };
}
