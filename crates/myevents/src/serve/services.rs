//! What a process's roles provide, put together: their routes in one router with health and
//! OpenAPI, their consumers subscribed, their outboxes relayed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use bus::Bus;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::with_health;
use crate::roles::{self, Provides, Role, Stop};

/// Every consumer group of the system, whichever process runs it.
fn all_subscriptions() -> Vec<bus::Subscription> {
    roles::ALL.iter().filter_map(|r| r.subscription()).collect()
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

/// A process's roles, started.
pub(super) struct Services {
    /// Every role's routes, plus health and OpenAPI.
    pub router: Router,
    /// The consumers, the relays and the roles' own work, which shutdown waits for.
    pub tasks: Vec<JoinHandle<()>>,
    /// The gRPC Notificator's address, for the ports file.
    pub grpc: Option<SocketAddr>,
    /// Each ends, with the reason, if the process must stop serving.
    pub stops: Vec<Stop>,
}

/// Puts together what each role provides (`started`, in the order of `roles::ALL`): merges
/// their routes, subscribes their consumers and starts the relay of their outboxes. The same
/// code whether the process runs one role or all.
pub(super) fn start_services(
    started: Vec<(&'static dyn Role, Provides)>,
    bus: Option<&Arc<dyn Bus>>,
    background: &CancellationToken,
) -> Services {
    let mut router = Router::new();
    let mut openapi = Vec::new();
    let mut checks = Vec::new();
    let mut consumers = Vec::new();
    let mut outboxes: Vec<(&'static str, Arc<dyn bus::Outbox>)> = Vec::new();
    let mut own_tasks = Vec::new();
    let mut grpc = None;
    let mut stops = Vec::new();
    for (role, provided) in started {
        if let Some(routes) = provided.routes {
            router = router.merge(routes);
        }
        openapi.extend(role.openapi());
        checks.extend(provided.check);
        consumers.extend(provided.consumer);
        outboxes.extend(provided.outbox.map(|outbox| (role.name(), outbox)));
        own_tasks.extend(provided.tasks);
        grpc = grpc.or(provided.grpc);
        stops.extend(provided.stop);
    }
    let mut tasks = Vec::new();
    // A process that runs only the web UI has no bus, and none of its roles has a consumer or an
    // outbox: only a role that keeps state has them, and then the process has a bus.
    if let Some(bus) = bus {
        for (subscription, consumer) in consumers {
            tasks.push(bus.subscribe(subscription, consumer, background.clone()));
        }
        tasks.push(start_relays(outboxes, bus.clone(), background.clone()));
    }
    tasks.extend(own_tasks);
    Services {
        router: with_health(router, &openapi, checks, bus.cloned()),
        tasks,
        grpc,
        stops,
    }
}
