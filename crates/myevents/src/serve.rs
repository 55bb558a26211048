//! `myevents serve`: opens the stores and the bus of the configured roles, starts their relays
//! and consumers, serves the API and metrics, and shuts down in order on SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use bus::Bus;
use futures_util::future::join_all;
use platform::{Auth, Config};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Role;
use crate::broker::open_bus;
use crate::stores::{Stores, Tables, open_stores};

/// What `/health/ready` asks, and the document `/openapi.json` answers.
#[derive(Clone)]
struct Readiness {
    stores: Stores,
    /// None in a process that runs only the web UI.
    bus: Option<Arc<dyn Bus>>,
    document: Arc<serde_json::Value>,
}

/// Whether a secret is one of the placeholders the deployment files ship (deploy/k8s), which
/// anyone can read: a deployment that forgot to replace one must not start.
fn is_placeholder(secret: &str) -> bool {
    secret.starts_with("replace-me")
}

/// The token secret: configured, or generated once into `data_dir/jwt-secret` so that every
/// process sharing the folder (and every restart) accepts the same tokens.
fn jwt_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.auth.jwt_secret {
        if secret.len() < 16 {
            bail!("auth.jwt_secret must have at least 16 characters");
        }
        if is_placeholder(secret) {
            bail!(
                "auth.jwt_secret is still the placeholder of the deployment files: anyone could \
                 sign tokens with it; set a secret of your own (e.g. `openssl rand -hex 32`)"
            );
        }
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("jwt-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 16 => return Ok(secret),
        Ok(_) => bail!(
            "{} is too short to be a secret; delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    platform::tls::write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

/// `auth.jwt_previous_secret`, if set: the secret before a rotation.
fn previous_jwt_secret(config: &Config) -> anyhow::Result<Option<&[u8]>> {
    let Some(previous) = &config.auth.jwt_previous_secret else {
        return Ok(None);
    };
    if previous.len() < 16 || is_placeholder(previous) {
        bail!(
            "auth.jwt_previous_secret is too short or a placeholder of the deployment files: \
             set it to the secret before the rotation, or unset it"
        );
    }
    Ok(Some(previous.as_bytes()))
}

/// Signs with `secret`; also accepts the tokens of `previous`, during a rotation.
fn auth(config: &Config, secret: &[u8], previous: Option<&[u8]>) -> Auth {
    let settings = &config.auth;
    let auth = Auth::new(secret, settings.token_ttl_secs)
        .with_issuer_and_audience(&settings.jwt_issuer, &settings.jwt_audience);
    match previous {
        Some(previous) => auth.with_previous_secret(previous),
        None => auth,
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

/// Creates the configured admin if it does not exist. While the users database does not answer,
/// the service starts anyway and keeps trying in the background; a malformed e-mail or password
/// stops the start.
async fn create_admin(
    users: Arc<dyn users::UserStore>,
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

/// The parts of the notifications service that are not HTTP: its mail sender, the gRPC
/// Notificator and, when etcd is configured, its registration there. The consumer starts with
/// the other consumers in [`start_services`].
/// Answers the Notificator's address and the tasks.
async fn start_notifications(
    config: &Config,
    store: Arc<dyn notifications::NotificationStore>,
    background: &CancellationToken,
) -> anyhow::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    let settings = &config.notifications;
    let transport =
        notifications::mail::from_url(&settings.mail_url, &config.data_dir, &settings.from)
            .map_err(anyhow::Error::msg)
            .context("invalid notifications settings")?;
    let listener = platform::http::bind("notifications.grpc_listen", &settings.grpc_listen).await?;
    let bound = listener.local_addr()?;
    let mut tasks = vec![notifications::sender::spawn_sender(
        store.clone(),
        transport,
        background.clone(),
    )];
    let stop = background.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = notifications::grpc::serve(listener, store, stop).await {
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
            background.clone(),
        ));
    }
    Ok((bound, tasks))
}

/// Every consumer group of the system, whichever process runs it.
fn all_subscriptions() -> [bus::Subscription; 3] {
    [
        events::subscription(),
        bookings::subscription(),
        notifications::subscription(),
    ]
}

/// Starts the outbox relays once the broker keeps every consumer group's events (RabbitMQ drops
/// what it cannot route, so a group's queue must exist before anything is published for it).
/// Until then, and while the broker is down, committed events wait in the outboxes.
fn start_relays(
    outboxes: Vec<(&'static str, Arc<dyn bus::Outbox>)>,
    bus: Arc<dyn Bus>,
    background: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        'declare: loop {
            for subscription in all_subscriptions() {
                if let Err(error) = bus.declare(&subscription).await {
                    failures += 1;
                    tracing::warn!(%error, "cannot prepare the broker yet; will retry");
                    for (service, outbox) in &outboxes {
                        bus::relay::measure_backlog(service, outbox.as_ref(), 0).await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(bus::backoff(failures)) => {}
                        _ = background.cancelled() => return,
                    }
                    continue 'declare;
                }
            }
            break;
        }
        let relays: Vec<JoinHandle<()>> = outboxes
            .into_iter()
            .map(|(service, outbox)| {
                bus::spawn_relay(service, outbox, bus.clone(), background.clone())
            })
            .collect();
        for relay in relays {
            let _ = relay.await;
        }
    })
}

/// The routes of every role this process runs, plus health and OpenAPI; starts each role's
/// outbox relay and consumer. The same code whether the process runs one role or all.
fn start_services(
    config: &Config,
    signin: (users::signin::Limits, Vec<IpAddr>),
    stores: &Stores,
    bus: Option<&Arc<dyn Bus>>,
    links: &platform::LinkSigner,
    background: &CancellationToken,
) -> (Router, Vec<JoinHandle<()>>) {
    let mut router = Router::new();
    let mut openapi = Vec::new();
    let mut tasks = Vec::new();
    let mut outboxes: Vec<(&'static str, Arc<dyn bus::Outbox>)> = Vec::new();
    // A process that runs only the web UI has no bus, and then no store either.
    let Some(bus) = bus else {
        return (with_health(router, &openapi, stores, None), tasks);
    };
    if let Some(store) = &stores.events {
        router = router.merge(events::router(store.clone()));
        openapi.push(events::openapi());
        outboxes.push(("events", store.outbox()));
        let consumer = Arc::new(events::SalesConsumer(store.clone()));
        tasks.push(bus.subscribe(events::subscription(), consumer, background.clone()));
    }
    if let Some(store) = &stores.bookings {
        let settings = bookings::Settings {
            max_seats_per_booking: config.bookings.max_seats_per_booking,
            links: links.clone(),
            public_url: config.public_url(),
            guest_bookings_per_hour: config.bookings.guest_bookings_per_hour,
        };
        router = router.merge(bookings::router(store.clone(), settings));
        openapi.push(bookings::openapi());
        outboxes.push(("bookings", store.outbox()));
        let consumer = Arc::new(bookings::InventoryConsumer(store.clone()));
        tasks.push(bus.subscribe(bookings::subscription(), consumer, background.clone()));
    }
    if let Some(store) = &stores.users {
        let (limits, proxies) = signin;
        router = router.merge(users::router(store.clone(), limits, proxies));
        openapi.push(users::openapi());
        outboxes.push(("users", store.outbox()));
    }
    if let Some(store) = &stores.notifications {
        let consumer = Arc::new(notifications::MailConsumer {
            store: store.clone(),
            links: notifications::BookingLinks::new(links.clone(), config.public_url()),
        });
        tasks.push(bus.subscribe(notifications::subscription(), consumer, background.clone()));
    }
    tasks.push(start_relays(outboxes, bus.clone(), background.clone()));
    (
        with_health(router, &openapi, stores, Some(bus.clone())),
        tasks,
    )
}

/// The routes every process serves, with their OpenAPI description.
fn health_routes() -> OpenApiRouter<Readiness> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of a process serving these services' parts (`myevents openapi` prints
/// it for every service).
pub fn openapi_document(parts: Vec<utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    platform::openapi::document(std::iter::once(health_routes().into_openapi()).chain(parts))
}

/// `router` with `/health/live`, `/health/ready` (asking `stores` and `bus`) and `/openapi.json`
/// (describing `openapi`).
fn with_health(
    router: Router,
    openapi: &[utoipa::openapi::OpenApi],
    stores: &Stores,
    bus: Option<Arc<dyn Bus>>,
) -> Router {
    let document = serde_json::to_value(openapi_document(openapi.to_vec()))
        .unwrap_or_else(|e| json!({"error": format!("the OpenAPI document failed: {e}")}));
    let readiness = Readiness {
        stores: stores.clone(),
        bus,
        document: Arc::new(document),
    };
    router.merge(health_routes().split_for_parts().0.with_state(readiness))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", responses(
    (status = 200, description = "Alive", body = Live),
))]
async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Live {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// Whether this process's storage and broker are reachable.
#[derive(ToSchema)]
#[allow(dead_code)] // a shape for the OpenAPI document: `ready` writes it with json!
struct Ready {
    ready: bool,
    /// Why not, for a person (only when not ready).
    error: Option<String>,
    /// Each part that failed (only when not ready).
    reasons: Option<Vec<String>>,
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "OpenAPI 3.1", body = Object),
))]
async fn openapi_json(State(readiness): State<Readiness>) -> Json<serde_json::Value> {
    Json(readiness.document.as_ref().clone())
}

/// How long `/health/ready` waits for each database or broker to answer. Each check bounds its
/// own steps (3 s each, and a check may take two: the pool, then one direct connection that says
/// why not), so this only catches one that would wait on the network for good; it is longer than
/// two steps so that a database that refuses is reported with its reason.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this process's storage and broker are reachable.
#[utoipa::path(get, path = "/health/ready", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready, with the reasons", body = Ready),
))]
async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    let Stores {
        events,
        bookings,
        users,
        notifications,
        ..
    } = &readiness.stores;
    let checks = [
        ("the events database", events.as_ref().map(|s| s.check())),
        (
            "the bookings database",
            bookings.as_ref().map(|s| s.check()),
        ),
        ("the users database", users.as_ref().map(|s| s.check())),
        (
            "the notifications database",
            notifications.as_ref().map(|s| s.check()),
        ),
        ("the broker", readiness.bus.as_ref().map(|b| b.check())),
    ];
    // A database or broker cut off by the network does not refuse: it stays silent, and a check
    // would wait as long as TCP does. Silence past the deadline counts as down, so that the
    // replica turns not ready and its load balancer stops sending to it. The checks run at once:
    // the answer takes at most one deadline.
    let reasons: Vec<String> = join_all(checks.into_iter().filter_map(|(what, check)| {
        let check = check?;
        Some(async move {
            match tokio::time::timeout(READY_CHECK_TIMEOUT, check).await {
                Ok(result) => result.err(),
                Err(_) => Some(format!(
                    "{what} did not answer within {} s",
                    READY_CHECK_TIMEOUT.as_secs()
                )),
            }
        })
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        let error = format!("not ready: {}", reasons.join("; "));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": error, "reasons": reasons})),
        )
    }
}
