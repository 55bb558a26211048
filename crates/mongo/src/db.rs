use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, ConnectionString, HostInfo, IndexOptions};
use mongodb::{Client, Database, IndexModel};
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Notify, OnceCell};

use crate::{inbox, outbox};

/// How long a request waits for the server before it is answered 503: short, so that a client is
/// not left hanging while the database is down (the driver's default is 30 s).
const TIMEOUT: Duration = Duration::from_secs(3);
/// The database name a URL without one gets, before the service's suffix.
const DEFAULT_DATABASE: &str = "myevents";
/// The MongoDB error code of a collection that exists already.
const NAMESPACE_EXISTS: i32 = 48;

#[derive(Debug, thiserror::Error)]
pub enum MongoError {
    #[error("invalid MongoDB URL: {0}")]
    Url(String),
    /// The driver's own text adds its labels and the server's raw answer in bytes; its kind is
    /// what a person can read.
    #[error("{}", .0.kind)]
    Driver(#[from] mongodb::error::Error),
    /// A document this program cannot read, or a write it refuses.
    #[error("{0}")]
    Invalid(String),
    /// Creating the collections failed; the cause keeps its kind (a server that does not answer
    /// is unavailable, not a bug).
    #[error("MongoDB {database}: cannot create the collections: {error}")]
    Preparing {
        database: String,
        error: Box<MongoError>,
    },
    /// An error with the database it happened in, as it leaves this crate.
    #[error("MongoDB {database}: {error}")]
    In {
        database: String,
        error: Box<MongoError>,
    },
}

/// A write that hit a unique index.
const DUPLICATE_KEY: i32 = 11000;
/// The server's codes for "not now" (MongoDB's `error_codes.yml`): a host that cannot be
/// reached, a time limit, a server shutting down or stepping down, a lock or write conflict
/// that outlasted the retries.
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    24,    // LockTimeout
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

impl From<MongoError> for platform::StoreError {
    fn from(e: MongoError) -> Self {
        use platform::StoreError;
        let detail = e.to_string();
        let Some(driver) = e.driver() else {
            // A URL this program was given, or a document it cannot read.
            return StoreError::Internal(detail);
        };
        let duplicate = match driver.kind.as_ref() {
            ErrorKind::InsertMany(many) => many
                .write_errors
                .iter()
                .flatten()
                .any(|w| w.code == DUPLICATE_KEY),
            _ => e.code() == Some(DUPLICATE_KEY),
        };
        let unavailable = matches!(
            driver.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::DnsResolve { .. }
                | ErrorKind::Authentication { .. }
                | ErrorKind::Shutdown
                | ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(_))
        ) || driver.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
            || driver.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
            || e.code().is_some_and(|c| UNAVAILABLE_CODES.contains(&c));
        if duplicate {
            StoreError::Conflict(detail)
        } else if unavailable {
            StoreError::Unavailable(detail)
        } else {
            // A document the driver cannot decode, a command this program got wrong.
            StoreError::Internal(detail)
        }
    }
}

impl From<platform::UnknownValue> for MongoError {
    fn from(e: platform::UnknownValue) -> Self {
        MongoError::Invalid(e.to_string())
    }
}

impl MongoError {
    /// The driver's error, if this is one.
    pub fn driver(&self) -> Option<&mongodb::error::Error> {
        match self {
            MongoError::Driver(e) => Some(e),
            MongoError::In { error, .. } | MongoError::Preparing { error, .. } => error.driver(),
            _ => None,
        }
    }

    /// The server's error code, if the server refused something.
    pub fn code(&self) -> Option<i32> {
        match self.driver()?.kind.as_ref() {
            ErrorKind::Command(e) => Some(e.code),
            ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => Some(e.code),
            _ => None,
        }
    }
}

/// A collection a service uses, with its indexes.
pub struct Collection {
    pub name: &'static str,
    pub indexes: Vec<IndexModel>,
}

impl Collection {
    pub fn new(name: &'static str) -> Self {
        Collection {
            name,
            indexes: Vec::new(),
        }
    }

    /// Adds an index on `keys`, unique if `unique`.
    pub fn index(mut self, keys: Document, unique: bool) -> Self {
        let options = IndexOptions::builder().unique(unique).build();
        self.indexes
            .push(IndexModel::builder().keys(keys).options(options).build());
        self
    }
}

/// How to open the database of a service.
pub struct Options {
    /// The service: its database is `<database of the URL, or myevents>_<service>`.
    pub service: &'static str,
    /// The service's own collections (the outbox and the inbox are added).
    pub collections: Vec<Collection>,
    /// Documents that must exist, inserted once by their `_id` if missing: (collection, document).
    pub seeds: Vec<(&'static str, Document)>,
}

/// The MongoDB database of one service.
#[derive(Clone)]
pub struct Mongo {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    /// `host:port/database`, for messages (never the password).
    name: String,
    database: String,
    options: Options,
    /// Made on first use: building a client needs the runtime, opening the store does not.
    client: OnceCell<Client>,
    /// Set once the collections and indexes exist; until then every use tries to create them,
    /// so a service that started while its database was down gets them as soon as it is back.
    prepared: OnceCell<()>,
    /// Transactions of this process take turns (see [`Mongo::transaction`]).
    writers: Mutex<()>,
    committed: Arc<Notify>,
}

impl Mongo {
    /// Prepares the database without connecting: a service starts while its database is down,
    /// says so on `/health/ready`, and answers 503 until it is back. The driver reconnects by
    /// itself.
    pub fn open(url: &str, options: Options) -> Result<Mongo, MongoError> {
        if url.starts_with("mongodb+srv://") {
            return Err(MongoError::Url(format!(
                "{} uses DNS SRV records, which this build cannot resolve: list the servers \
                 instead, mongodb://host:port[,host:port]/database",
                redacted(url)
            )));
        }
        let parsed = ConnectionString::parse(url)
            .map_err(|e| MongoError::Url(format!("{}: {e}", redacted(url))))?;
        let hosts = match &parsed.host_info {
            HostInfo::HostIdentifiers(hosts) => hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        };
        let base = parsed
            .default_database
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DATABASE);
        let database = format!("{base}_{}", options.service);
        Ok(Mongo {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                name: format!("{hosts}/{database}"),
                database,
                options,
                client: OnceCell::new(),
                prepared: OnceCell::new(),
                writers: Mutex::new(()),
                committed: Arc::new(Notify::new()),
            }),
        })
    }

    /// `host:port/database`, for messages.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The error `e` naming this database.
    pub(crate) fn named(&self, e: MongoError) -> MongoError {
        match e {
            MongoError::In { .. } | MongoError::Preparing { .. } => e,
            e => MongoError::In {
                database: self.inner.name.clone(),
                error: Box::new(e),
            },
        }
    }

    async fn client(&self) -> Result<&Client, MongoError> {
        self.inner
            .client
            .get_or_try_init(|| async {
                // Only a `mongodb+srv` URL makes this wait for anything, and `open` refused those.
                let mut options = ClientOptions::parse(&self.inner.url).await?;
                options.server_selection_timeout = Some(TIMEOUT);
                options.connect_timeout = Some(TIMEOUT);
                options.app_name.get_or_insert_with(|| "myevents".into());
                Ok(Client::with_options(options)?)
            })
            .await
    }

    /// Creates the collections, indexes and seed documents, if this handle has not done so yet.
    pub async fn migrate(&self) -> Result<(), MongoError> {
        self.inner
            .prepared
            .get_or_try_init(|| self.prepare())
            .await
            .map(|_| ())
            .map_err(|e| MongoError::Preparing {
                database: self.inner.name.clone(),
                error: Box::new(e),
            })
    }

    async fn prepare(&self) -> Result<(), MongoError> {
        let db = self.client().await?.database(&self.inner.database);
        let shared: Vec<Collection> = outbox::collection()
            .into_iter()
            .chain([inbox::collection()])
            .collect();
        for collection in self.inner.options.collections.iter().chain(&shared) {
            // Made explicitly, not by a first insert: a transaction cannot create a collection
            // that a concurrent one creates too.
            match db.create_collection(collection.name).await {
                Ok(()) => {}
                Err(e) if MongoError::Driver(e.clone()).code() == Some(NAMESPACE_EXISTS) => {}
                Err(e) => return Err(e.into()),
            }
            if !collection.indexes.is_empty() {
                // Creating an index that exists with the same keys and options does nothing.
                db.collection::<Document>(collection.name)
                    .create_indexes(collection.indexes.clone())
                    .await?;
            }
        }
        for (collection, seed) in self.inner.options.seeds.iter().chain(&outbox::seeds()) {
            let id = seed.get("_id").cloned().unwrap_or_default();
            db.collection::<Document>(collection)
                .update_one(doc! {"_id": id}, doc! {"$setOnInsert": seed.clone()})
                .upsert(true)
                .await?;
        }
        Ok(())
    }

    /// The database, once its collections are in place.
    pub async fn database(&self) -> Result<Database, MongoError> {
        self.migrate().await?;
        Ok(self.client().await?.database(&self.inner.database))
    }

    /// Taken by each transaction of this process for its whole run (see [`Mongo::transaction`]).
    pub(crate) fn writers(&self) -> &Mutex<()> {
        &self.inner.writers
    }

    pub(crate) async fn start_session(&self) -> Result<mongodb::ClientSession, MongoError> {
        Ok(self.client().await?.start_session().await?)
    }

    /// How many documents of `collection` `filter` finds.
    pub async fn count(&self, collection: &str, filter: Document) -> Result<u64, MongoError> {
        let counted = async {
            Ok::<_, MongoError>(
                self.database()
                    .await?
                    .collection::<Document>(collection)
                    .count_documents(filter)
                    .await?,
            )
        };
        counted.await.map_err(|e| self.named(e))
    }

    /// The document of `collection` that `filter` finds first in `sort` order.
    pub async fn find_one<T>(
        &self,
        collection: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Option<T>, MongoError>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let found = async {
            Ok::<_, MongoError>(
                self.database()
                    .await?
                    .collection::<T>(collection)
                    .find_one(filter)
                    .sort(sort)
                    .await?,
            )
        };
        found.await.map_err(|e| self.named(e))
    }

    /// The documents of `collection` that `filter` finds, in `sort` order, at most `limit`.
    pub async fn find<T>(
        &self,
        collection: &str,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> Result<Vec<T>, MongoError>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let found = async {
            let mut cursor = self
                .database()
                .await?
                .collection::<T>(collection)
                .find(filter)
                .sort(sort)
                .limit(limit.unwrap_or(0))
                .await?;
            let mut documents = Vec::new();
            while cursor.advance().await? {
                documents.push(cursor.deserialize_current()?);
            }
            Ok::<_, MongoError>(documents)
        };
        found.await.map_err(|e| self.named(e))
    }

    /// Woken after every transaction that wrote to the outbox; the outbox relay waits on it.
    pub fn committed(&self) -> Arc<Notify> {
        self.inner.committed.clone()
    }

    /// Why this database cannot be used right now, if it cannot (for `/health/ready`).
    pub async fn check(&self) -> Result<(), String> {
        let db = self.database().await.map_err(|e| e.to_string())?;
        // The driver has no socket timeout: a server that accepts connections but does not
        // answer would otherwise leave the probe hanging.
        match tokio::time::timeout(TIMEOUT, db.run_command(doc! {"ping": 1})).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.named(e.into()).to_string()),
            Err(_) => Err(format!(
                "MongoDB {}: no answer to a ping within {} s",
                self.inner.name,
                TIMEOUT.as_secs()
            )),
        }
    }
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            service: "bookings",
            collections: Vec::new(),
            seeds: Vec::new(),
        }
    }

    #[test]
    fn each_service_gets_a_database_of_its_own() {
        let plain = Mongo::open("mongodb://127.0.0.1:27017", options()).unwrap();
        assert_eq!(plain.name(), "127.0.0.1:27017/myevents_bookings");
        let named = Mongo::open("mongodb://u:p@h:1,h:2/shop?retryWrites=false", options()).unwrap();
        assert_eq!(named.name(), "h:1,h:2/shop_bookings");
    }

    #[test]
    fn unusable_urls_are_refused_with_the_reason() {
        let srv = Mongo::open("mongodb+srv://u:secret@cluster.example/db", options())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(srv.contains("SRV") && !srv.contains("secret"), "{srv}");
        assert!(Mongo::open("mongodb://", options()).is_err());
    }
}
