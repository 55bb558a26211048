//! `myevents replay --role bookings`: rebuilds the bookings service's database from the history
//! of the bus (Kafka or the embedded log), with the service stopped.
//!
//! The rebuilt state goes into a new file (in PostgreSQL: a new schema) first; only when it is
//! complete does it take the place of the current database, which is kept beside it as
//! `<file>.before-replay-<Unix seconds>` (schema `bookings_before_replay_<Unix seconds>`).
//! Events the current database has not published yet are carried over into the new outbox, so
//! nothing committed is lost. Idempotency records are not on the bus and do not survive: a
//! client retrying a request made before the replay books again.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bookings::replay::{Rebuild, Rebuilt};
use bookings::{BookingStore, Restore};
use contracts::Envelope;
use platform::Config;

use crate::broker::open_bus;
use crate::roles;
use crate::stores::{Storage, storage};

/// Why a replay refuses a bookings service on DynamoDB.
#[cfg(feature = "dynamodb")]
const NOT_ON_DYNAMO: &str = "replay is not supported on DynamoDB: tables cannot be renamed, so a \
    rebuilt state cannot take the place of the current one in one step, and writing it over the \
    live tables would leave a half-replayed database if the replay stopped part-way";

/// Why a replay refuses a bookings service on MongoDB, which cannot rename a database nor move
/// several collections in one step: a rebuilt state written beside the live one could not take
/// its place atomically, and a reader would see a mix of the two.
#[cfg(feature = "mongodb")]
const NOT_ON_MONGO: &str = "replay is not supported on MongoDB storage: the rebuilt bookings \
    state cannot be swapped in atomically there; replay into SQLite or PostgreSQL";

pub async fn replay(config: &Config) -> anyhow::Result<()> {
    let roles = roles::parse_list(&config.roles)?;
    if !matches!(roles[..], [role] if role.name() == "bookings") {
        bail!(
            "replay rebuilds the bookings service only (--role bookings): the events and users \
             services own facts (locations, passwords) that the bus does not carry in full"
        );
    }
    let target = storage(config, "bookings")?;
    // Held until the new state has taken the old one's place: no service may write into the
    // old one meanwhile.
    let _lock: Box<dyn std::any::Any> = match &target {
        Storage::Sqlite(path) => Box::new(crate::lock::lock_database(path, "bookings")?),
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => Box::new(
            postgres::replay_lock::lock_for_replay(url, "bookings")
                .await
                .context("cannot replay the bookings database")?,
        ),
        // Refused before the history is read, which can take a while.
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(_) => bail!(NOT_ON_DYNAMO),
        #[cfg(feature = "mongodb")]
        Storage::Mongo(_) => bail!(NOT_ON_MONGO),
    };
    let bus = open_bus(config)?;
    let history = bus
        .history()
        .await
        .context("cannot read the history of the bus")?;
    match target {
        Storage::Sqlite(path) => replay_into_file(&path, history).await,
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => replay_into_postgres(&url, history).await,
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(_) => bail!(NOT_ON_DYNAMO),
        #[cfg(feature = "mongodb")]
        Storage::Mongo(_) => bail!(NOT_ON_MONGO),
    }
}

/// What the current store committed but may not have published yet: facts of this service like
/// those on the bus, and still to be published.
async fn unpublished(current: &dyn BookingStore) -> anyhow::Result<Vec<Envelope>> {
    let pending = current
        .outbox()
        .pending(0, usize::MAX)
        .await
        .context("cannot read the outbox of the current database")?;
    Ok(pending.into_iter().map(|(_, envelope)| envelope).collect())
}

/// Folds the history and the carried events into a state, printing what it found.
fn rebuild(history: &[Envelope], carried: &[Envelope]) -> Rebuilt {
    let mut rebuild = Rebuild::new();
    let mut undecodable = 0usize;
    for envelope in history.iter().chain(carried) {
        match envelope.decode() {
            Ok(event) => rebuild.apply(&envelope.id, &event),
            Err(_) => undecodable += 1,
        }
    }
    let rebuilt = rebuild.finish();
    println!(
        "{} messages replayed: {} events, {} bookings ({} active), {} cancellations owed to other services",
        history.len() + carried.len(),
        rebuilt.inventory.len(),
        rebuilt.bookings.len(),
        rebuilt
            .bookings
            .iter()
            .filter(|b| b.status == bookings::domain::BookingStatus::Active)
            .count(),
        rebuilt.owed.len(),
    );
    if undecodable > 0 {
        println!("{undecodable} messages were not domain events and were passed over");
    }
    for fact in &rebuilt.ignored {
        println!("not replayed: {fact}");
    }
    rebuilt
}

async fn replay_into_file(path: &Path, history: Vec<Envelope>) -> anyhow::Result<()> {
    let carried = if path.exists() {
        let current = bookings::SqlBookingStore::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        unpublished(&current).await?
    } else {
        Vec::new()
    };
    let rebuilt = rebuild(&history, &carried);

    let fresh = with_suffix(path, ".replay");
    remove_database(&fresh)?;
    {
        let store = bookings::SqlBookingStore::open(&fresh)
            .with_context(|| format!("cannot create {}", fresh.display()))?;
        store
            .restore(rebuilt, carried)
            .await
            .context("cannot write the rebuilt state")?;
        // Dropping the store waits for its writer, so the file is complete after this block.
    }

    // The swap leaves a complete database at `path` at every instant: both files are folded
    // into single files first, the old one gets a second name, and the new one replaces it in
    // one rename.
    let kept = with_suffix(path, &format!(".before-replay-{}", unix_now()));
    fold_wal(&fresh)?;
    if path.exists() {
        fold_wal(path)?;
        std::fs::hard_link(path, &kept)
            .with_context(|| format!("cannot keep {} as {}", path.display(), kept.display()))?;
    }
    std::fs::rename(&fresh, path)
        .with_context(|| format!("cannot move {} to {}", fresh.display(), path.display()))?;
    if kept.exists() {
        println!(
            "{} is rebuilt; the database before the replay is kept as {}",
            path.display(),
            kept.display()
        );
    } else {
        println!("{} is rebuilt", path.display());
    }
    Ok(())
}

#[cfg(feature = "postgres")]
/// The same in PostgreSQL: the new state goes into the schema `bookings_replay`, which then takes
/// the place of `bookings` in one transaction; the old schema is kept as
/// `bookings_before_replay_<Unix seconds>`.
async fn replay_into_postgres(url: &str, history: Vec<Envelope>) -> anyhow::Result<()> {
    const LIVE: &str = "bookings";
    const FRESH: &str = "bookings_replay";
    let current = bookings::SqlBookingStore::connect(url)?;
    current
        .migrate()
        .await
        .context("cannot open the bookings database")?;
    let carried = unpublished(&current).await?;
    let rebuilt = rebuild(&history, &carried);

    postgres::drop_schema(url, FRESH).await?;
    let fresh = bookings::SqlBookingStore::connect_in(url, FRESH)?;
    fresh
        .restore(rebuilt, carried)
        .await
        .context("cannot write the rebuilt state")?;
    let kept = format!("bookings_before_replay_{}", unix_now());
    postgres::replace_schema(url, LIVE, FRESH, &kept).await?;
    println!("schema {LIVE} is rebuilt; the one before the replay is kept as schema {kept}");
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A SQLite database and its WAL files.
const PARTS: [&str; 3] = ["", "-wal", "-shm"];

fn remove_database(path: &Path) -> anyhow::Result<()> {
    for part in PARTS {
        let file = with_suffix(path, part);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", file.display())),
        }
    }
    Ok(())
}

/// Copies what the write-ahead log of `path` holds into the database file and removes the log,
/// so that the file alone is the whole database and can be linked and renamed.
fn fold_wal(path: &Path) -> anyhow::Result<()> {
    let conn = sqlite::rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .with_context(|| format!("cannot fold the log of {} into it", path.display()))?;
    drop(conn);
    for part in ["-wal", "-shm"] {
        let file = with_suffix(path, part);
        if file.exists() {
            bail!(
                "{} is still in use: stop what uses it first",
                file.display()
            );
        }
    }
    Ok(())
}
