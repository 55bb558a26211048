//! The notifications service: its consumer turns facts into queued mails; its mail sender, its
//! gRPC Notificator and, when etcd is configured, its registration there. It has no HTTP routes.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use notifications::NotificationStore;
use platform::Config;

use super::{Check, OpenRole, Provides, Role, Shared};
use crate::stores::{Storage, Tables, storage};

pub(crate) struct Notifications;

#[async_trait]
impl Role for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn subscription(&self) -> Option<bus::Subscription> {
        Some(notifications::subscription())
    }

    async fn open(&self, config: &Config, tables: Tables) -> anyhow::Result<Box<dyn OpenRole>> {
        Ok(Box::new(Open(open_store(config, tables).await?)))
    }
}

struct Open(Arc<dyn NotificationStore>);

#[async_trait]
impl OpenRole for Open {
    async fn start(&self, shared: &Shared<'_>) -> anyhow::Result<Provides> {
        let Shared {
            config,
            links,
            background,
        } = shared;
        let store = &self.0;
        let settings = &config.notifications;
        let transport =
            notifications::mail::from_url(&settings.mail_url, &config.data_dir, &settings.from)
                .map_err(anyhow::Error::msg)
                .context("invalid notifications settings")?;
        let listener =
            platform::http::bind("notifications.grpc_listen", &settings.grpc_listen).await?;
        let bound = listener.local_addr()?;
        let mut tasks = vec![notifications::sender::spawn_sender(
            store.clone(),
            transport,
            (*background).clone(),
        )];
        let (grpc_store, stop) = (store.clone(), (*background).clone());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = notifications::grpc::serve(listener, grpc_store, stop).await {
                tracing::error!(%error, "the gRPC Notificator failed");
            }
        }));
        tracing::info!(address = %bound, "gRPC Notificator listening");
        if !settings.etcd_endpoints.is_empty() {
            let advertise = settings
                .advertise
                .clone()
                .unwrap_or_else(|| format!("127.0.0.1:{}", bound.port()));
            tasks.push(notifications::discovery::spawn_registration(
                settings.etcd_endpoints.clone(),
                advertise,
                (*background).clone(),
            ));
        }
        let consumer = notifications::MailConsumer {
            store: store.clone(),
            links: notifications::BookingLinks::new((*links).clone(), config.public_url()),
        };
        Ok(Provides {
            consumer: Some((notifications::subscription(), Arc::new(consumer))),
            check: Some(Check::new(
                "the notifications database",
                store.clone(),
                |s| s.check(),
            )),
            tasks,
            grpc: Some(bound),
            ..Provides::default()
        })
    }
}

// A build with SQLite alone has nothing to decide with `tables` (see stores.rs).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mongodb", feature = "dynamodb")),
    allow(unused_variables)
)]
async fn open_store(config: &Config, tables: Tables) -> anyhow::Result<Arc<dyn NotificationStore>> {
    Ok(match storage(config, "notifications")? {
        Storage::Sqlite(path) => Arc::new(
            notifications::SqlNotificationStore::open(&path).with_context(|| {
                format!("cannot open the notifications database {}", path.display())
            })?,
        ),
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => crate::stores::remote_store!(
            "notifications",
            notifications::SqlNotificationStore,
            url,
            tables
        ),
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(url) => crate::stores::remote_store!(
            "notifications",
            notifications::DynamoNotificationStore,
            url,
            tables
        ),
        #[cfg(feature = "mongodb")]
        Storage::Mongo(url) => crate::stores::remote_store!(
            "notifications",
            notifications::MongoNotificationStore,
            url,
            tables
        ),
    })
}
