//! What each role of a process starts: its routes, its consumer, its outbox relay, and the
//! notifications service's mail sender, gRPC Notificator and etcd registration.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use bus::Bus;
use platform::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::with_health;
use crate::stores::Stores;

/// The parts of the notifications service that are not HTTP: its mail sender, the gRPC
/// Notificator and, when etcd is configured, its registration there. The consumer starts with
/// the other consumers in [`start_services`].
/// Answers the Notificator's address and the tasks.
pub(super) async fn start_notifications(
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
pub(super) fn start_services(
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
