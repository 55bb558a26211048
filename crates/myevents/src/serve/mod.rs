//! `myevents serve`: opens the stores and the bus of the configured roles, starts their relays
//! and consumers, serves the API and metrics, and shuts down in order on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bus::Bus;
use platform::Config;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Role;
use crate::broker::open_bus;
use crate::stores::{Tables, open_stores};

mod auth;
mod health;
mod services;

use auth::{auth, create_admin, jwt_secret, previous_jwt_secret, signin_settings};
pub use health::openapi_document;
use services::{start_notifications, start_services};

fn web_dir(config: &Config) -> Option<PathBuf> {
    match &config.web_dir {
        Some(dir) => Some(dir.clone()),
        None => Some(PathBuf::from("web/dist")).filter(|d| d.join("index.html").is_file()),
    }
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let roles = Role::parse_list(&config.roles)?;
    open_stores(config, &roles, Tables::Required).await?;
    open_bus_of(config, &roles)?;
    println!("databases of {} are up to date", names(&roles));
    Ok(())
}

/// The bus, for a process that runs at least one service (a process that runs only the web UI
/// needs none).
fn open_bus_of(config: &Config, roles: &[Role]) -> anyhow::Result<Option<Arc<dyn Bus>>> {
    if roles.iter().any(|r| r.has_state()) {
        open_bus(config).map(Some)
    } else {
        Ok(None)
    }
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let roles = Role::parse_list(&config.roles)?;
    let role_names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    // The release and its commit as SemVer build metadata (`0.1.0+1a2b3c4d5e6f`).
    let version = concat!(env!("CARGO_PKG_VERSION"), "+", env!("MYEVENTS_COMMIT"));
    platform::metrics::build_info(version, &role_names.join(","));
    let bus = open_bus_of(&config, &roles)?;
    let listener = platform::http::bind("listen", &config.listen).await?;
    let metrics_listener = platform::http::bind("metrics_listen", &config.metrics_listen).await?;
    let tls_listener = platform::http::bind_tls(&config)?;
    // Port 0 (any free one) in `listen`: links name the port actually bound.
    if config.public_url.is_none() {
        config.public_url = Some(format!(
            "http://localhost:{}",
            listener.local_addr()?.port()
        ));
    }
    let secret = jwt_secret(&config)?;
    // During a rotation the previous secret still verifies tokens and guest booking links.
    let previous = previous_jwt_secret(&config)?;
    let auth = Arc::new(auth(&config, &secret, previous));
    let links = platform::LinkSigner::new(&secret, previous);
    let stores = open_stores(&config, &roles, Tables::WhenReachable).await?;
    let replay_lock = lock_against_replay(&config, &roles).await?;

    // Background work stops after the HTTP servers have drained, so that the events of the last
    // requests are still relayed.
    let background = CancellationToken::new();
    if let (Some(users), Some(email), Some(password)) = (
        &stores.users,
        &config.auth.admin_email,
        &config.auth.admin_password,
    ) {
        create_admin(users.clone(), email.clone(), password.clone(), &background).await?;
    }
    let signin = signin_settings(&config)?;
    let (router, mut tasks) =
        start_services(&config, signin, &stores, bus.as_ref(), &links, &background);
    let mut grpc = None;
    if let Some(store) = &stores.notifications {
        let (notificator, started) =
            start_notifications(&config, store.clone(), &background).await?;
        grpc = Some(notificator);
        tasks.extend(started);
    }
    if let Some(path) = &config.ports_file {
        let bound = Listening {
            http: listener.local_addr()?,
            metrics: metrics_listener.local_addr()?,
            https: tls_listener.as_ref().map(|l| l.local_addr()).transpose()?,
            grpc,
        };
        write_ports_file(path, &bound)?;
    }

    let in_flight = TaskTracker::new();
    let app = platform::http::finish(router, &config, web_dir(&config), auth, in_flight.clone())?;

    let http_stop = CancellationToken::new();
    let metrics_stop = http_stop.clone();
    let metrics = tokio::spawn(async move {
        let server = axum::serve(metrics_listener, platform::metrics::router())
            .with_graceful_shutdown(metrics_stop.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%error, "metrics server failed");
        }
    });
    let signal_stop = http_stop.clone();
    tokio::spawn(async move {
        platform::http::shutdown_signal().await;
        tracing::info!("shutting down: finishing the requests in flight");
        signal_stop.cancel();
    });
    // Set if a replay took the bookings database from under this process (see
    // `lock_against_replay`): it stops serving and exits with that error.
    let replayed = Arc::new(std::sync::OnceLock::new());
    let replay_watch = replay_lock.map(|held| {
        let (stop, replayed) = (http_stop.clone(), replayed.clone());
        tokio::spawn(async move {
            let error = held.await;
            tracing::error!(%error, "stopping: the bookings database is being replayed");
            let _ = replayed.set(error);
            stop.cancel();
        })
    });
    tracing::info!(roles = %names(&roles), data_dir = %config.data_dir.display(), "MyEvents is starting");

    let served =
        platform::http::serve(app, &config, listener, tls_listener, http_stop.clone()).await;
    http_stop.cancel();

    // Handlers whose clients hung up may still be running; let them finish their writes.
    in_flight.close();
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
        tracing::warn!("some requests did not finish within the grace period");
    }
    background.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = metrics.await;
    // The last handles: dropping them lets each writer thread commit what it has queued and
    // waits for it (see `sqlite::Db`).
    drop(stores);
    drop(bus);
    if let Some(watch) = replay_watch {
        watch.abort();
    }
    tracing::info!("stopped");
    if let Some(error) = replayed.get() {
        bail!("stopped serving: {error}");
    }
    served
}

/// A bookings service on PostgreSQL holds the replay lock of its schema while it serves, as one
/// on SQLite holds its database's lock file (`open_stores`): `myevents replay` refuses to run
/// beside it, and it refuses to start beside a replay. The future ends if a replay takes the
/// lock while the database was unreachable; the service must then stop.
async fn lock_against_replay(
    config: &Config,
    roles: &[Role],
) -> anyhow::Result<Option<ReplayTaken>> {
    #[cfg(feature = "postgres")]
    if roles.contains(&Role::Bookings)
        && let crate::stores::Storage::Postgres(url) = crate::stores::storage(config, "bookings")?
    {
        let held = postgres::replay_lock::lock_for_serving(&url, "bookings")
            .await
            .context("cannot serve the bookings database")?;
        return Ok(Some(Box::pin(async move { held.await.to_string() })));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = (config, roles);
    Ok(None)
}

/// Ends, with the reason, when a replay has taken the bookings database (see
/// [`lock_against_replay`]).
type ReplayTaken = std::pin::Pin<Box<dyn Future<Output = String> + Send>>;

/// The addresses a `serve` process listens on, as `ports_file` receives them: JSON such as
/// `{"http": "127.0.0.1:40123", "metrics": "127.0.0.1:40125", "https": null, "grpc":
/// "127.0.0.1:40127"}` (`https` without TLS, `grpc` without the notifications role are null).
#[derive(Serialize)]
struct Listening {
    http: SocketAddr,
    metrics: SocketAddr,
    https: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
}

/// Writes `bound` to `path` whole or not at all (a temporary file renamed), so that a reader
/// that finds the file finds every address.
fn write_ports_file(path: &Path, bound: &Listening) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec(bound)?)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write ports_file {}", path.display()))
}
