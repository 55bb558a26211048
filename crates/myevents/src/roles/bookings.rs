//! The bookings service: bookings and guest bookings, their routes, the seats its consumer keeps
//! from the events service's facts, and the replay lock it holds on PostgreSQL.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use bookings::BookingStore;
use platform::Config;

use super::{Check, OpenRole, Provides, Role, Shared, Stop};
use crate::stores::{Storage, Tables, storage};

pub(crate) struct Bookings;

#[async_trait]
impl Role for Bookings {
    fn name(&self) -> &'static str {
        "bookings"
    }

    fn subscription(&self) -> Option<bus::Subscription> {
        Some(bookings::subscription())
    }

    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        Some(bookings::openapi())
    }

    async fn open(&self, config: &Config, tables: Tables) -> anyhow::Result<Box<dyn OpenRole>> {
        Ok(Box::new(Open(open_store(config, tables).await?)))
    }
}

struct Open(Arc<dyn BookingStore>);

#[async_trait]
impl OpenRole for Open {
    async fn start(&self, shared: &Shared<'_>) -> anyhow::Result<Provides> {
        let Shared { config, links, .. } = shared;
        let stop = lock_against_replay(config).await?;
        let store = &self.0;
        let settings = bookings::Settings {
            max_seats_per_booking: config.bookings.max_seats_per_booking,
            links: (*links).clone(),
            public_url: config.public_url(),
            guest_bookings_per_hour: config.bookings.guest_bookings_per_hour,
        };
        Ok(Provides {
            routes: Some(bookings::router(store.clone(), settings)),
            outbox: Some(store.outbox()),
            consumer: Some((
                bookings::subscription(),
                Arc::new(bookings::InventoryConsumer(store.clone())),
            )),
            check: Some(Check::new("the bookings database", store.clone(), |s| {
                s.check()
            })),
            stop,
            ..Provides::default()
        })
    }
}

/// A bookings service on PostgreSQL holds the replay lock of its schema while it serves, as one
/// on SQLite holds its database's lock file (`stores::open_stores`): `myevents replay` refuses
/// to run beside it, and it refuses to start beside a replay. The future ends if a replay takes
/// the lock while the database was unreachable; the service must then stop.
async fn lock_against_replay(config: &Config) -> anyhow::Result<Option<Stop>> {
    #[cfg(feature = "postgres")]
    if let Storage::Postgres(url) = storage(config, "bookings")? {
        let held = postgres::replay_lock::lock_for_serving(&url, "bookings")
            .await
            .context("cannot serve the bookings database")?;
        return Ok(Some(Box::pin(async move {
            let error = held.await.to_string();
            tracing::error!(%error, "stopping: the bookings database is being replayed");
            error
        })));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = config;
    Ok(None)
}

// A build with SQLite alone has nothing to decide with `tables` (see stores.rs).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mongodb", feature = "dynamodb")),
    allow(unused_variables)
)]
async fn open_store(config: &Config, tables: Tables) -> anyhow::Result<Arc<dyn BookingStore>> {
    Ok(match storage(config, "bookings")? {
        Storage::Sqlite(path) => Arc::new(
            bookings::SqlBookingStore::open(&path)
                .with_context(|| format!("cannot open the bookings database {}", path.display()))?,
        ),
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => {
            crate::stores::remote_store!("bookings", bookings::SqlBookingStore, url, tables)
        }
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(url) => {
            crate::stores::remote_store!("bookings", bookings::DynamoBookingStore, url, tables)
        }
        #[cfg(feature = "mongodb")]
        Storage::Mongo(url) => {
            crate::stores::remote_store!("bookings", bookings::MongoBookingStore, url, tables)
        }
    })
}
