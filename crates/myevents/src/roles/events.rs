//! The events service: locations and events, their routes, and the sales figures its consumer
//! keeps from the bookings service's facts.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use events::EventStore;
use platform::Config;

use super::{Check, OpenRole, Provides, Role, Shared};
use crate::stores::{Storage, Tables, storage};

pub(crate) struct Events;

#[async_trait]
impl Role for Events {
    fn name(&self) -> &'static str {
        "events"
    }

    fn subscription(&self) -> Option<bus::Subscription> {
        Some(events::subscription())
    }

    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        Some(events::openapi())
    }

    async fn open(&self, config: &Config, tables: Tables) -> anyhow::Result<Box<dyn OpenRole>> {
        Ok(Box::new(Open(open_store(config, tables).await?)))
    }
}

struct Open(Arc<dyn EventStore>);

#[async_trait]
impl OpenRole for Open {
    async fn start(&self, _: &Shared<'_>) -> anyhow::Result<Provides> {
        let store = &self.0;
        Ok(Provides {
            routes: Some(events::router(store.clone())),
            outbox: Some(store.outbox()),
            consumer: Some((
                events::subscription(),
                Arc::new(events::SalesConsumer(store.clone())),
            )),
            check: Some(Check::new("the events database", store.clone(), |s| {
                s.check()
            })),
            ..Provides::default()
        })
    }
}

// A build with SQLite alone has nothing to decide with `tables` (see stores.rs).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mongodb", feature = "dynamodb")),
    allow(unused_variables)
)]
async fn open_store(config: &Config, tables: Tables) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match storage(config, "events")? {
        Storage::Sqlite(path) => Arc::new(
            events::SqlEventStore::open(&path)
                .with_context(|| format!("cannot open the events database {}", path.display()))?,
        ),
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => {
            crate::stores::remote_store!("events", events::SqlEventStore, url, tables)
        }
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(url) => {
            crate::stores::remote_store!("events", events::DynamoEventStore, url, tables)
        }
        #[cfg(feature = "mongodb")]
        Storage::Mongo(url) => {
            crate::stores::remote_store!("events", events::MongoEventStore, url, tables)
        }
    })
}
