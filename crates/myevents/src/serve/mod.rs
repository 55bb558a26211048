//! `myevents serve`: opens the stores and the bus of the configured roles, starts each role and
//! puts together what it provides (routes, consumer, relay, readiness check), serves the API and
//! metrics, and shuts down in order on SIGINT/SIGTERM.

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

use crate::broker::open_bus;
use crate::roles::{self, Role, Shared};
use crate::stores::{Tables, open_stores};

mod auth;
mod health;
mod services;

pub(crate) use auth::is_placeholder;
use auth::{auth, jwt_secret, previous_jwt_secret};
pub use health::openapi_document;
use services::{Services, start_services};

fn web_dir(config: &Config) -> Option<PathBuf> {
    match &config.web_dir {
        Some(dir) => Some(dir.clone()),
        None => Some(PathBuf::from("web/dist")).filter(|d| d.join("index.html").is_file()),
    }
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let roles = roles::parse_list(&config.roles)?;
    open_stores(config, &roles, Tables::Required).await?;
    open_bus_of(config, &roles)?;
    println!("databases of {} are up to date", names(&roles));
    Ok(())
}

/// The bus, for a process that runs at least one service (a process that runs only the web UI
/// needs none).
fn open_bus_of(config: &Config, roles: &[&dyn Role]) -> anyhow::Result<Option<Arc<dyn Bus>>> {
    if roles.iter().any(|r| r.has_state()) {
        open_bus(config).map(Some)
    } else {
        Ok(None)
    }
}

fn names(roles: &[&dyn Role]) -> String {
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let roles = roles::parse_list(&config.roles)?;
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
    let opened = open_stores(&config, &roles, Tables::WhenReachable).await?;

    // Background work stops after the HTTP servers have drained, so that the events of the last
    // requests are still relayed.
    let background = CancellationToken::new();
    let shared = Shared {
        config: &config,
        links: &links,
        background: &background,
    };
    // Every role is started, in the order of `roles::ALL`, before any consumer or relay runs:
    // a role that refuses to start (a bad setting, a replay holding its database) stops the
    // process before it has consumed or relayed anything.
    let mut started = Vec::new();
    for role in roles::ALL {
        if let Some(open) = opened.iter().find(|o| o.role.name() == role.name()) {
            started.push((open.role, open.state.start(&shared).await?));
        }
    }
    let Services {
        router,
        tasks,
        grpc,
        stops,
    } = start_services(started, bus.as_ref(), &background);
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
    // Set if a role can no longer serve (a replay took the bookings database from under this
    // process, see `roles::Provides::stop`): the process stops serving and exits with that error.
    let stopped = Arc::new(std::sync::OnceLock::new());
    let stop_watches: Vec<_> = stops
        .into_iter()
        .map(|reason| {
            let (http_stop, stopped) = (http_stop.clone(), stopped.clone());
            tokio::spawn(async move {
                let _ = stopped.set(reason.await);
                http_stop.cancel();
            })
        })
        .collect();
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
    drop(opened);
    drop(bus);
    for watch in stop_watches {
        watch.abort();
    }
    tracing::info!("stopped");
    if let Some(error) = stopped.get() {
        bail!("stopped serving: {error}");
    }
    served
}

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
