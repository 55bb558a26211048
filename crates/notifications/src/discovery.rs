//! Finding Notificators through etcd, as the reference's go-kit tutorial did, without its
//! panic when etcd is down: an instance registers `/services/notificator/<host:port>` under a
//! lease it keeps alive and revokes on shutdown (a killed instance drops out when its lease
//! expires); callers watch the prefix and spread calls over the live instances.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::grpc::proto::SendEmailRequest;
use crate::grpc::proto::notificator_client::NotificatorClient;

pub const PREFIX: &str = "/services/notificator/";
/// Seconds a lease outlives its last keep-alive: how long a killed instance stays listed.
const LEASE_TTL: i64 = 5;

/// Bounds every call to etcd, so that a connection that hangs without closing is noticed.
fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
}

fn pause(failures: u32) -> Duration {
    Duration::from_millis(200 * u64::from(failures.min(10)))
}

/// Keeps `advertise` registered in etcd at `endpoints` until `shutdown`, reconnecting with
/// growing pauses while etcd is unreachable.
pub fn spawn_registration(
    endpoints: Vec<String>,
    advertise: String,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match register(&endpoints, &advertise, &shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "cannot register in etcd; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(pause(failures)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    })
}

/// Registers once and keeps the lease alive; `Ok` after a clean deregistration on shutdown.
async fn register(
    endpoints: &[String],
    advertise: &str,
    shutdown: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let key = format!("{PREFIX}{advertise}");
    let registering = async {
        let mut client = Client::connect(endpoints, Some(options())).await?;
        let lease = client.lease_grant(LEASE_TTL, None).await?.id();
        client
            .put(
                key.as_str(),
                advertise,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await?;
        Ok::<_, etcd_client::Error>((client, lease))
    };
    // An etcd that does not answer must not hold up the shutdown.
    let (mut client, lease) = tokio::select! {
        registered = registering => registered?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(%key, "registered in etcd");
    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
    let mut answered = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs((LEASE_TTL / 3).max(1) as u64)) => {
                // Silence for a whole lease: the lease may have expired unseen; start over.
                if answered.elapsed() > Duration::from_secs(LEASE_TTL as u64) {
                    return Err(etcd_client::Error::LeaseKeepAliveError("etcd stopped answering".into()));
                }
                keeper.keep_alive().await?;
            }
            answer = answers.message() => {
                if answer?.is_none_or(|a| a.ttl() <= 0) {
                    return Err(etcd_client::Error::LeaseKeepAliveError("the lease is gone".into()));
                }
                answered = tokio::time::Instant::now();
            }
            _ = shutdown.cancelled() => {
                // Leave the rotation now rather than when the lease runs out.
                client.lease_revoke(lease).await?;
                tracing::info!(%key, "left etcd");
                return Ok(());
            }
        }
    }
}

/// The live Notificators, as etcd lists them, and round-robin calls over them.
pub struct NotificatorPool {
    instances: RwLock<Vec<String>>,
    next: AtomicUsize,
}

impl NotificatorPool {
    /// Starts watching `endpoints` until `shutdown`; the pool is empty until etcd answers.
    pub fn watch(endpoints: Vec<String>, shutdown: CancellationToken) -> Arc<NotificatorPool> {
        let pool = Arc::new(NotificatorPool {
            instances: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
        });
        let watched = pool.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while !shutdown.is_cancelled() {
                if let Err(error) = watched.follow(&endpoints, &shutdown).await {
                    failures += 1;
                    tracing::warn!(%error, "cannot watch etcd; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(pause(failures)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        });
        pool
    }

    /// The addresses listed now, sorted.
    pub fn instances(&self) -> Vec<String> {
        self.instances.read().map(|i| i.clone()).unwrap_or_default()
    }

    fn set(&self, update: impl FnOnce(&mut Vec<String>)) {
        if let Ok(mut instances) = self.instances.write() {
            update(&mut instances);
            instances.sort();
            instances.dedup();
        }
    }

    /// Lists the prefix, then applies every change after that listing.
    async fn follow(
        &self,
        endpoints: &[String],
        shutdown: &CancellationToken,
    ) -> Result<(), etcd_client::Error> {
        let mut client = Client::connect(endpoints, Some(options())).await?;
        let listed = client
            .get(PREFIX, Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = listed.header().map(|h| h.revision()).unwrap_or(0);
        let now: Vec<String> = listed
            .kvs()
            .iter()
            .filter_map(|kv| kv.value_str().ok().map(str::to_owned))
            .collect();
        self.set(|instances| *instances = now);
        let mut stream = client
            .watch(
                PREFIX,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await?;
        loop {
            let message = tokio::select! {
                message = stream.message() => message?,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(response) = message else {
                return Err(etcd_client::Error::WatchError("the watch ended".into()));
            };
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let address = kv
                    .key_str()
                    .map(|k| k.trim_start_matches(PREFIX).to_owned())
                    .unwrap_or_default();
                match event.event_type() {
                    EventType::Put => self.set(|i| i.push(address)),
                    EventType::Delete => self.set(|i| i.retain(|a| *a != address)),
                }
            }
        }
    }

    /// Calls `SendEmail` on the next live instance, moving on to the others when one cannot be
    /// reached; the mail's id and the instance that took it.
    pub async fn send_email(&self, email: &str, content: &str) -> Result<(String, String), Status> {
        let instances = self.instances();
        if instances.is_empty() {
            return Err(Status::unavailable("no Notificator is registered in etcd"));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Status::unavailable("no Notificator answered");
        for n in 0..instances.len() {
            let address = &instances[(start + n) % instances.len()];
            let mut client = match NotificatorClient::connect(format!("http://{address}")).await {
                Ok(client) => client,
                Err(error) => {
                    last = Status::unavailable(format!("{address}: {error}"));
                    continue;
                }
            };
            let request = SendEmailRequest {
                email: email.to_owned(),
                content: content.to_owned(),
            };
            match client.send_email(request).await {
                Ok(reply) => return Ok((reply.into_inner().id, address.clone())),
                Err(status) if status.code() == tonic::Code::Unavailable => last = status,
                Err(status) => return Err(status),
            }
        }
        Err(last)
    }
}
