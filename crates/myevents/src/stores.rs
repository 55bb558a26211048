//! Where each service keeps its state: the storage URL of each role, on SQLite or, when this
//! binary was built with their cargo features, on PostgreSQL, MongoDB or DynamoDB; and the
//! opening of the stores of a process's roles (each role's module says which store it opens).
// A build with SQLite alone compiles the database-server parts out: `tables` then has nothing to
// decide, `remote_store!` nothing to open, and every storage is a file.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mongodb", feature = "dynamodb")),
    allow(unused_variables, unused_macros, irrefutable_let_patterns)
)]

use std::path::PathBuf;
#[cfg(any(feature = "postgres", feature = "mongodb", feature = "dynamodb"))]
use std::sync::Arc;

#[cfg(any(feature = "postgres", feature = "mongodb", feature = "dynamodb"))]
use anyhow::Context;
use anyhow::bail;
use platform::Config;

use crate::features::with_feature;
use crate::lock::DatabaseLock;
use crate::roles::{OpenRole, Role};

/// Where a service keeps its state, from its storage URL.
pub(crate) enum Storage {
    /// `sqlite` (the default) means `data_dir/<service>.db`; `sqlite://PATH` names the file.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: the service's tables in a schema named after it.
    #[cfg(feature = "postgres")]
    Postgres(String),
    /// `dynamodb://HOST:PORT?region=R` (a local server) or `dynamodb://aws?region=R`: tables
    /// named `<prefix>.<service>.<table>`.
    #[cfg(feature = "dynamodb")]
    Dynamo(String),
    /// `mongodb://…`: the service's collections in a database named after it.
    #[cfg(feature = "mongodb")]
    Mongo(String),
}

pub(crate) fn storage(config: &Config, service: &str) -> anyhow::Result<Storage> {
    let url = config.storage_url(service);
    if url == "sqlite" {
        return Ok(Storage::Sqlite(
            config.data_dir.join(format!("{service}.db")),
        ));
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            bail!("storage URL {url:?} of {service} names no file");
        }
        return Ok(Storage::Sqlite(PathBuf::from(path)));
    }
    // The schemes are recognised here, not by the backends' crates, so that a binary built
    // without one still names the feature it lacks. `mongodb+srv://` goes to the MongoDB store,
    // which refuses it with its reason rather than leaving it "not supported".
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return with_feature!(
            "postgres",
            format!("the storage URL of {service}"),
            Storage::Postgres(url.to_owned())
        );
    }
    if url.starts_with("dynamodb://") {
        return with_feature!(
            "dynamodb",
            format!("the storage URL of {service}"),
            Storage::Dynamo(url.to_owned())
        );
    }
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        return with_feature!(
            "mongodb",
            format!("the storage URL of {service}"),
            Storage::Mongo(url.to_owned())
        );
    }
    bail!(
        "storage URL {:?} of {service} is not supported: use sqlite, sqlite://PATH, \
         postgres://…, mongodb://… or dynamodb://HOST:PORT?region=… (dynamodb://aws?region=… \
         for AWS)",
        platform::url::redacted(url)
    )
}

/// Whether opening a store must also create its tables.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tables {
    /// `myevents migrate` and one-off commands: a database that does not answer is an error.
    Required,
    /// `myevents serve`: a service starts while its database is down, says so on
    /// `/health/ready`, answers 503, and creates its tables once the database answers.
    WhenReachable,
}

/// Creates a PostgreSQL, MongoDB or DynamoDB store's tables with `migrating`, as `tables` asks:
/// waits for them when required, and otherwise lets it run in the background (the store creates
/// them on first use anyway).
#[cfg(any(feature = "postgres", feature = "mongodb", feature = "dynamodb"))]
async fn prepare<E>(
    service: &'static str,
    migrating: impl Future<Output = Result<(), E>> + Send + 'static,
    tables: Tables,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tables {
        Tables::Required => migrating
            .await
            .with_context(|| format!("cannot prepare the {service} database")),
        Tables::WhenReachable => {
            tokio::spawn(async move {
                if let Err(error) = migrating.await {
                    tracing::warn!(service, %error, "the database does not answer yet; its tables are created when it does");
                }
            });
            Ok(())
        }
    }
}

/// `store` once its tables are prepared as `tables` asks (see [`prepare`]).
#[cfg(any(feature = "postgres", feature = "mongodb", feature = "dynamodb"))]
pub(crate) async fn with_tables<S, F, E>(
    service: &'static str,
    store: Arc<S>,
    tables: Tables,
    migrate: impl FnOnce(Arc<S>) -> F,
) -> anyhow::Result<Arc<S>>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    prepare(service, migrate(store.clone()), tables).await?;
    Ok(store)
}

/// A store on a database server (PostgreSQL, MongoDB, DynamoDB): prepared without connecting,
/// its tables created as `tables` asks (see [`with_tables`]).
macro_rules! remote_store {
    ($service:literal, $store:ty, $url:expr, $tables:expr) => {
        $crate::stores::with_tables(
            $service,
            ::std::sync::Arc::new(<$store>::connect(&$url)?),
            $tables,
            |s| async move { s.migrate().await },
        )
        .await?
    };
}
#[cfg(any(feature = "postgres", feature = "mongodb", feature = "dynamodb"))]
pub(crate) use remote_store;

/// A role of this process with its store open.
pub(crate) struct Opened {
    pub role: &'static dyn Role,
    pub state: Box<dyn OpenRole>,
    /// Its SQLite database's lock, held against a second server or a replay while the store is
    /// open (declared after `state`, so released after the store has closed).
    _lock: Option<DatabaseLock>,
}

/// Opens the store of each of `roles` that keeps state, in their order, and locks the SQLite
/// databases among them.
pub(crate) async fn open_stores(
    config: &Config,
    roles: &[&'static dyn Role],
    tables: Tables,
) -> anyhow::Result<Vec<Opened>> {
    let mut opened = Vec::new();
    for &role in roles {
        let mut lock = None;
        if role.has_state()
            && let Storage::Sqlite(path) = storage(config, role.name())?
        {
            lock = Some(crate::lock::lock_database(&path, role.name())?);
        }
        opened.push(Opened {
            role,
            state: role.open(config, tables).await?,
            _lock: lock,
        });
    }
    Ok(opened)
}
