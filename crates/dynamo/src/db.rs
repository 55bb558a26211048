use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, Select, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use contracts::Envelope;
use tokio::sync::{Mutex, MutexGuard, Notify, OnceCell};

use crate::error::{DynamoError, UNAVAILABLE_CODES};
use crate::item::Item;
use crate::outbox;
use crate::request::{Commit, Query, Write};
use crate::tables::{Key, KeyKind, Options, Table};
use crate::url::parse_url;

/// How long one operation may take before the caller is answered 503: a service whose database
/// is down answers quickly instead of leaving its clients hanging.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a write whose conditions keep losing to concurrent writes is tried again before it
/// is given up as unavailable. Bounded by time, not by a count: under a flash sale on a slow
/// server a write may lose many times and still be worth finishing.
const CONFLICT_PATIENCE: Duration = Duration::from_secs(60);
/// How long table creation waits for a new table to become ACTIVE.
const CREATION_PATIENCE: Duration = Duration::from_secs(120);
/// Most items in one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// The DynamoDB tables of one service.
#[derive(Clone)]
pub struct Dynamo {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// `dynamodb <endpoint> (<region>, tables <prefix>.<service>.*)`, for messages.
    name: String,
    /// `<prefix>.<service>.`
    table_prefix: String,
    tables: Vec<Table>,
    /// Set once every table exists; until then every use tries to create them first, so a
    /// service that started while its database was down gets its tables when it comes back.
    created: OnceCell<()>,
    committed: Arc<Notify>,
    /// Held while a transaction that appends to the outbox draws its positions and commits, so
    /// that this process's commits never race each other for the outbox counter; commits of
    /// other processes are caught by the counter's condition and tried again.
    appending: Mutex<()>,
    /// The URL's `writes=serial`: see [`serial_writes`].
    serial_writes: bool,
}

/// moto (the test server) applies the writes of concurrent requests in parallel threads with no
/// isolation, and undoes a failed transaction by putting back a copy of the whole table taken
/// when it started, which loses what other requests wrote meanwhile
/// (`crates/dynamo/moto_isolation.py` shows it). A URL with `writes=serial` (the tests' moto
/// URLs) makes this process's writes one at a time. DynamoDB isolates transactions itself and
/// is not held back: the workaround is the configuration's choice, not a guess from the URL.
fn serial_writes() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

impl Dynamo {
    /// Prepares a client without connecting: a service starts while its database is down, says
    /// so on `/health/ready`, and answers 503 until it is back.
    pub fn open(url: &str, options: Options) -> Result<Dynamo, DynamoError> {
        let address = parse_url(url).map_err(|e| DynamoError::Url(format!("{url:?}: {e}")))?;
        let local = address.endpoint.is_some();
        let credentials =
            bus::aws::credentials(local).map_err(|e| DynamoError::Url(format!("{url:?}: {e}")))?;
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(address.region.clone()))
            .credentials_provider(credentials)
            .http_client(bus::aws::https_client())
            .timeout_config(bus::aws::timeouts(OPERATION_TIMEOUT));
        config.set_endpoint_url(address.endpoint.clone());
        let endpoint = address
            .endpoint
            .unwrap_or_else(|| format!("AWS {}", address.region));
        let table_prefix = format!("{}.{}.", address.prefix, options.service);
        Ok(Dynamo {
            inner: Arc::new(Inner {
                client: Client::from_conf(config.build()),
                name: format!("dynamodb {endpoint} (tables {table_prefix}*)"),
                table_prefix,
                tables: options.tables,
                created: OnceCell::new(),
                committed: Arc::new(Notify::new()),
                appending: Mutex::new(()),
                serial_writes: address.serial_writes,
            }),
        })
    }

    /// The full name of this service's table `table`.
    pub fn table(&self, table: &str) -> String {
        format!("{}{table}", self.inner.table_prefix)
    }

    /// `error` from doing `what`, naming the database.
    pub fn error<E, R>(&self, what: &str, error: SdkError<E, R>) -> DynamoError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        // No answer, or no answer in time: the network or DynamoDB. A service error says which.
        let refused = match &error {
            SdkError::ServiceError(_) => error
                .code()
                .is_some_and(|code| !UNAVAILABLE_CODES.contains(&code)),
            SdkError::ConstructionFailure(_) => true,
            _ => false,
        };
        let detail = format!(
            "{}: {what}: {}",
            self.inner.name,
            bus::aws::describe(&error)
        );
        if refused {
            DynamoError::Refused(detail)
        } else {
            DynamoError::Unavailable(detail)
        }
    }

    /// Creates the tables that are missing, if this handle has not done so yet.
    pub async fn create_tables(&self) -> Result<(), DynamoError> {
        self.inner
            .created
            .get_or_try_init(|| async {
                for table in &self.inner.tables {
                    self.create_table(table).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn create_table(&self, table: &Table) -> Result<(), DynamoError> {
        let client = &self.inner.client;
        let name = self.table(table.name);
        let what = format!("cannot create table {name}");
        let described = client.describe_table().table_name(&name).send().await;
        match described {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                let created = self.create_request(table, &name)?.send().await;
                match created {
                    Ok(_) => {}
                    // Another process created it meanwhile.
                    Err(e) if e.code() == Some("ResourceInUseException") => {}
                    Err(e) => return Err(self.error(&what, e)),
                }
            }
            Err(e) => return Err(self.error(&what, e)),
        }
        let started = Instant::now();
        loop {
            let described = client
                .describe_table()
                .table_name(&name)
                .send()
                .await
                .map_err(|e| self.error(&what, e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return match table.expires_by {
                    Some(attribute) => self.enable_time_to_live(&name, attribute).await,
                    None => Ok(()),
                };
            }
            if started.elapsed() > CREATION_PATIENCE {
                return Err(DynamoError::Unavailable(format!(
                    "{}: {what}: still {status:?} after {} s",
                    self.inner.name,
                    CREATION_PATIENCE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Turns on the table's time to live on `attribute`, unless it is on already (asking twice
    /// is an error).
    async fn enable_time_to_live(&self, name: &str, attribute: &str) -> Result<(), DynamoError> {
        let client = &self.inner.client;
        let what = format!("cannot turn on the time to live of {name}");
        let described = client
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .map_err(|e| self.error(&what, e))?;
        let on = described
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if on {
            return Ok(());
        }
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(attribute)
            .build()
            .map_err(|e| DynamoError::Data(e.to_string()))?;
        match client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(specification)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another process turned it on meanwhile.
            Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
            Err(e) => Err(self.error(&what, e)),
        }
    }

    fn create_request(
        &self,
        table: &Table,
        name: &str,
    ) -> Result<
        aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
        DynamoError,
    > {
        let built = |e: aws_sdk_dynamodb::error::BuildError| DynamoError::Data(e.to_string());
        let key_schema = |key: Key, sort: Option<Key>| {
            std::iter::once((key, KeyType::Hash))
                .chain(sort.map(|s| (s, KeyType::Range)))
                .map(|((attribute, _), kind)| {
                    KeySchemaElement::builder()
                        .attribute_name(attribute)
                        .key_type(kind)
                        .build()
                        .map_err(built)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        // Every key attribute of the table and its indexes, each once.
        let mut attributes: Vec<Key> = Vec::new();
        let keys = std::iter::once((table.key, table.sort))
            .chain(table.indexes.iter().map(|i| (i.key, i.sort)));
        for (key, sort) in keys {
            for k in std::iter::once(key).chain(sort) {
                if !attributes.iter().any(|a| a.0 == k.0) {
                    attributes.push(k);
                }
            }
        }
        let mut request = self
            .inner
            .client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(table.key, table.sort)?));
        for (attribute, kind) in attributes {
            let kind = match kind {
                KeyKind::S => ScalarAttributeType::S,
                KeyKind::N => ScalarAttributeType::N,
            };
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(kind)
                    .build()
                    .map_err(built)?,
            );
        }
        for index in &table.indexes {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(key_schema(index.key, index.sort)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(built)?,
            );
        }
        Ok(request)
    }

    /// The client, once the tables exist.
    pub async fn client(&self) -> Result<&Client, DynamoError> {
        self.create_tables().await?;
        Ok(&self.inner.client)
    }

    /// Holds back this process's other writes while a write runs, when the URL asks for it
    /// (see [`serial_writes`]).
    async fn write_turn(&self) -> Option<MutexGuard<'static, ()>> {
        if self.inner.serial_writes {
            Some(serial_writes().lock().await)
        } else {
            None
        }
    }

    /// Item `key` of `table`, read consistently.
    pub async fn get(&self, table: &str, key: Item) -> Result<Option<Item>, DynamoError> {
        let read = self
            .client()
            .await?
            .get_item()
            .table_name(self.table(table))
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading {table}"), e))?;
        Ok(read.item)
    }

    /// The items of `table` with these keys (in no particular order), read consistently.
    pub async fn get_many(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, DynamoError> {
        let name = self.table(table);
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut wanted = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| DynamoError::Data(e.to_string()))?;
            let started = Instant::now();
            loop {
                let read = self
                    .client()
                    .await?
                    .batch_get_item()
                    .request_items(&name, wanted)
                    .send()
                    .await
                    .map_err(|e| self.error(&format!("reading {table}"), e))?;
                if let Some(mut items) = read.responses
                    && let Some(items) = items.remove(&name)
                {
                    found.extend(items);
                }
                // What the server had no capacity for comes back to be asked again.
                match read.unprocessed_keys.and_then(|mut u| u.remove(&name)) {
                    Some(rest) if !rest.keys().is_empty() => wanted = rest,
                    _ => break,
                }
                self.patience(started, "reading")?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(found)
    }

    /// The request for what `query` finds in `table`, read consistently unless from an index.
    async fn query_request(
        &self,
        table: &str,
        query: Query,
    ) -> Result<QueryFluentBuilder, DynamoError> {
        let (names, values) = query.placeholders.into_parts();
        Ok(self
            .client()
            .await?
            .query()
            .table_name(self.table(table))
            .set_index_name(query.index.map(str::to_owned))
            .key_condition_expression(query.condition)
            .set_filter_expression(query.filter)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .scan_index_forward(!query.backward)
            .consistent_read(query.index.is_none()))
    }

    /// The items `query` finds in `table` (read consistently unless from an index), in key order.
    pub async fn query(&self, table: &str, query: Query) -> Result<Vec<Item>, DynamoError> {
        let limit = query.limit.unwrap_or(usize::MAX);
        let request = self.query_request(table, query).await?;
        let mut pages = request.into_paginator().send();
        let mut items = Vec::new();
        while items.len() < limit {
            match pages.next().await {
                Some(page) => {
                    let page = page.map_err(|e| self.error(&format!("reading {table}"), e))?;
                    items.extend(page.items.unwrap_or_default());
                }
                None => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    /// How many items `query` finds in `table`; DynamoDB counts them without sending them.
    pub async fn count(&self, table: &str, query: Query) -> Result<u64, DynamoError> {
        let mut pages = self
            .query_request(table, query)
            .await?
            .select(Select::Count)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(&format!("counting {table}"), e))?;
            count += u64::try_from(page.count).unwrap_or(0);
        }
        Ok(count)
    }

    /// Every item of `table`, read consistently, in no particular order.
    pub async fn scan(&self, table: &str) -> Result<Vec<Item>, DynamoError> {
        self.client()
            .await?
            .scan()
            .table_name(self.table(table))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error(&format!("reading {table}"), e))
    }

    /// Whether `table` holds any item.
    pub async fn holds_any(&self, table: &str) -> Result<bool, DynamoError> {
        let page = self
            .client()
            .await?
            .scan()
            .table_name(self.table(table))
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading {table}"), e))?;
        Ok(page.count > 0)
    }

    /// Makes one write on its own; false (and nothing written) when its condition did not hold.
    /// A transaction of one, so that a failed condition is told apart the same way everywhere.
    pub async fn write(&self, write: Write) -> Result<bool, DynamoError> {
        Ok(self.commit(vec![write], &[]).await? == Commit::Done)
    }

    /// Writes `writes` and appends `caused` to the outbox in one transaction; see
    /// [`Dynamo::commit_numbered`].
    pub async fn commit(
        &self,
        writes: Vec<Write>,
        caused: &[Envelope],
    ) -> Result<Commit, DynamoError> {
        self.commit_numbered(caused, |_| writes.clone()).await
    }

    /// Writes what `build` makes and appends `caused` to the outbox, all in one transaction.
    /// `build` is given the outbox position the first of `caused` gets (commit-ordered: a record
    /// may keep it as its creation order). A transaction that loses the outbox counter, or
    /// conflicts with another, is made again until [`CONFLICT_PATIENCE`] runs out; one whose own
    /// conditions fail is [`Commit::Refused`], with nothing written.
    pub async fn commit_numbered(
        &self,
        caused: &[Envelope],
        mut build: impl FnMut(i64) -> Vec<Write>,
    ) -> Result<Commit, DynamoError> {
        let client = self.client().await?;
        let started = Instant::now();
        // See `Inner::appending`.
        let _appending = if caused.is_empty() {
            None
        } else {
            Some(self.inner.appending.lock().await)
        };
        loop {
            let head = if caused.is_empty() {
                0
            } else {
                outbox::head(self).await?
            };
            let writes = build(head + 1);
            let own = writes.len();
            let mut items = writes
                .into_iter()
                .map(Write::into_transact)
                .collect::<Result<Vec<_>, _>>()?;
            for write in outbox::append(self, head, caused) {
                items.push(write.into_transact()?);
            }
            if items.is_empty() {
                return Ok(Commit::Done);
            }
            if items.len() > MAX_TRANSACTION_ITEMS {
                return Err(DynamoError::Data(format!(
                    "a transaction of {} items is more than DynamoDB takes ({MAX_TRANSACTION_ITEMS})",
                    items.len()
                )));
            }
            let sent = {
                let _turn = self.write_turn().await;
                client
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
                    .await
            };
            let reasons = match sent {
                Ok(_) => {
                    if !caused.is_empty() {
                        self.inner.committed.notify_waiters();
                    }
                    return Ok(Commit::Done);
                }
                Err(e) => match cancelled(&e) {
                    Some(reasons) => reasons,
                    None => return Err(self.error("writing a transaction", e)),
                },
            };
            let refused: Vec<usize> = reasons
                .iter()
                .take(own)
                .enumerate()
                .filter(|(_, code)| code.as_deref() == Some("ConditionalCheckFailed"))
                .map(|(i, _)| i)
                .collect();
            if !refused.is_empty() {
                return Ok(Commit::Refused(refused));
            }
            // The outbox counter moved (another process committed events) or the transaction
            // met another one on the same items: the same writes are made again.
            self.patience(started, "writing a transaction")?;
            tokio::time::sleep(jitter()).await;
        }
    }

    /// An error once a write has lost to concurrent writes for [`CONFLICT_PATIENCE`].
    pub fn patience(&self, started: Instant, what: &str) -> Result<(), DynamoError> {
        if started.elapsed() > CONFLICT_PATIENCE {
            return Err(DynamoError::Unavailable(format!(
                "{}: {what}: still conflicting with other writes after {} s",
                self.inner.name,
                CONFLICT_PATIENCE.as_secs()
            )));
        }
        Ok(())
    }

    /// Woken after every commit through [`Dynamo::commit`] that appended to the outbox.
    pub fn committed(&self) -> Arc<Notify> {
        self.inner.committed.clone()
    }

    /// Why this database cannot be used right now, if it cannot (for `/health/ready`).
    pub async fn check(&self) -> Result<(), String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let first = self.inner.tables.first().map(|t| self.table(t.name));
        client
            .describe_table()
            .set_table_name(first)
            .send()
            .await
            .map_err(|e| self.error("checking", e).to_string())?;
        Ok(())
    }
}

/// A short random pause before trying a write again, so that writers that collided do not
/// collide again in step.
pub fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(1..=25))
}

/// The cancellation code of each item, if `error` is a cancelled transaction.
fn cancelled<R>(error: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<Option<String>>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}
