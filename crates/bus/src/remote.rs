//! What the brokers that run as servers (RabbitMQ, Kafka, SQS) share: a consumer that starts
//! again after losing its broker, and a count of retries for brokers that do not count them.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Handler, Subscription, backoff};

/// Counts the retries of each message for brokers that redeliver without counting them
/// (RabbitMQ, Kafka), so that a message that keeps failing is parked rather than retried forever.
#[cfg(any(feature = "rabbitmq", feature = "kafka"))]
#[derive(Default)]
pub(crate) struct Attempts(std::collections::HashMap<String, u32>);

#[cfg(any(feature = "rabbitmq", feature = "kafka"))]
impl Attempts {
    /// What to do with message `id` given the handler's `outcome`: a retry asked for the
    /// [`crate::MAX_ATTEMPTS`]-th time becomes poison; any other outcome forgets the count.
    pub(crate) fn settle(&mut self, id: &str, outcome: crate::Outcome) -> crate::Outcome {
        match outcome {
            crate::Outcome::Retry(error) => {
                let count = self.0.entry(id.to_owned()).or_insert(0);
                *count += 1;
                if *count >= crate::MAX_ATTEMPTS {
                    self.0.remove(id);
                    crate::Outcome::Poison(format!("kept failing: {error}"))
                } else {
                    crate::Outcome::Retry(error)
                }
            }
            other => {
                self.0.remove(id);
                other
            }
        }
    }
}

/// Runs a broker consumer for `subscription` until `shutdown`: `consume` delivers until it
/// returns `Ok` (shut down) or fails (connection lost, broker gone), and after a failure it is
/// started again after a growing pause. `broker` names it in the log.
pub(crate) fn keep_consuming<B, F, Fut>(
    broker: &'static str,
    bus: B,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
    consume: F,
) -> JoinHandle<()>
where
    B: Send + Sync + 'static,
    F: Fn(B, Subscription, Arc<dyn Handler>, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    B: Clone,
{
    tokio::spawn(async move {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let run = consume(
                bus.clone(),
                subscription.clone(),
                handler.clone(),
                shutdown.clone(),
            );
            match run.await {
                Ok(()) => break,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(broker, group = %subscription.group, %error, "consumer lost its broker; starting it again");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    })
}
