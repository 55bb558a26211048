//! The users service: accounts, sign-in and its limits, and the admin the configuration names.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use platform::Config;
use tokio_util::sync::CancellationToken;
use users::UserStore;

use super::{Check, OpenRole, Provides, Role, Shared};
use crate::serve::is_placeholder;
use crate::stores::{Storage, Tables, storage};

pub(crate) struct Users;

#[async_trait]
impl Role for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        Some(users::openapi())
    }

    async fn open(&self, config: &Config, tables: Tables) -> anyhow::Result<Box<dyn OpenRole>> {
        Ok(Box::new(Open(open_store(config, tables).await?)))
    }
}

struct Open(Arc<dyn UserStore>);

#[async_trait]
impl OpenRole for Open {
    async fn start(&self, shared: &Shared<'_>) -> anyhow::Result<Provides> {
        let config = shared.config;
        let store = &self.0;
        if let (Some(email), Some(password)) =
            (&config.auth.admin_email, &config.auth.admin_password)
        {
            create_admin(
                store.clone(),
                email.clone(),
                password.clone(),
                shared.background,
            )
            .await?;
        }
        let (limits, proxies) = signin_settings(config)?;
        Ok(Provides {
            routes: Some(users::router(store.clone(), limits, proxies)),
            outbox: Some(store.outbox()),
            check: Some(Check::new("the users database", store.clone(), |s| {
                s.check()
            })),
            ..Provides::default()
        })
    }
}

/// The sign-in limits, and the proxies whose `X-Forwarded-For` is believed.
fn signin_settings(config: &Config) -> anyhow::Result<(users::signin::Limits, Vec<IpAddr>)> {
    let limits = users::signin::Limits {
        per_account: config.auth.max_failed_logins,
        per_address: config.auth.max_failed_logins_per_address,
        max_wait: Duration::from_secs(config.auth.lockout_secs),
    };
    let proxies = config
        .http
        .trusted_proxies
        .iter()
        .map(|p| {
            p.parse()
                .with_context(|| format!("http.trusted_proxies: {p:?} is not an IP address"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((limits, proxies))
}

/// Creates the configured admin if it does not exist. While the users database does not answer,
/// the service starts anyway and keeps trying in the background; a malformed e-mail or password
/// stops the start.
async fn create_admin(
    users: Arc<dyn UserStore>,
    email: String,
    password: String,
    background: &CancellationToken,
) -> anyhow::Result<()> {
    let email = platform::Email::parse(&email).map_err(anyhow::Error::msg)?;
    if is_placeholder(&password) {
        bail!(
            "auth.admin_password is still the placeholder of the deployment files: set a password \
             of your own"
        );
    }
    let attempt = move || {
        let (users, email, password) = (users.clone(), email.clone(), password.clone());
        async move {
            if users.by_email(email.as_str()).await?.is_none() {
                users::make_admin(&users, email.as_str(), &password).await?;
                tracing::info!(email = %email, "created the configured admin");
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let unavailable = |e: &anyhow::Error| {
        matches!(
            e.downcast_ref::<platform::StoreError>(),
            Some(platform::StoreError::Unavailable(_))
        )
    };
    match attempt().await {
        Err(error) if unavailable(&error) => {
            tracing::warn!(%error, "cannot create the configured admin yet; will retry");
        }
        done => return done,
    }
    let background = background.clone();
    tokio::spawn(async move {
        for failures in 1.. {
            tokio::select! {
                _ = tokio::time::sleep(bus::backoff(failures)) => {}
                _ = background.cancelled() => return,
            }
            match attempt().await {
                Err(error) if unavailable(&error) => {
                    tracing::debug!(%error, "cannot create the configured admin yet")
                }
                Err(error) => {
                    tracing::error!(%error, "cannot create the configured admin");
                    return;
                }
                Ok(()) => return,
            }
        }
    });
    Ok(())
}

/// Also for `myevents admin create`, which needs the store alone.
// A build with SQLite alone has nothing to decide with `tables` (see stores.rs).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mongodb", feature = "dynamodb")),
    allow(unused_variables)
)]
pub(crate) async fn open_store(
    config: &Config,
    tables: Tables,
) -> anyhow::Result<Arc<dyn UserStore>> {
    Ok(match storage(config, "users")? {
        Storage::Sqlite(path) => Arc::new(
            users::SqlUserStore::open(&path)
                .with_context(|| format!("cannot open the users database {}", path.display()))?,
        ),
        #[cfg(feature = "postgres")]
        Storage::Postgres(url) => {
            crate::stores::remote_store!("users", users::SqlUserStore, url, tables)
        }
        #[cfg(feature = "dynamodb")]
        Storage::Dynamo(url) => {
            crate::stores::remote_store!("users", users::DynamoUserStore, url, tables)
        }
        #[cfg(feature = "mongodb")]
        Storage::Mongo(url) => {
            crate::stores::remote_store!("users", users::MongoUserStore, url, tables)
        }
    })
}
