//! Amazon SQS, with SNS for fan-out, in the SPEC §4 wire format: body = the event's JSON, message
//! attribute `event_name` (String) = its name, plus `message_id`, `entity_key`, `occurred_at`
//! (RFC 3339) and `traceparent` so that an [`Envelope`] arrives whole.
//!
//! Publishers send every event to one SNS topic, `<namespace>events.fifo`, and need not know who
//! consumes: each consuming group has its own queue, `<namespace><group>.fifo`, subscribed to the
//! topic with raw delivery and a filter policy on `event_name` listing the events it wants, so
//! every group gets every event it wants and publishing is one call per ten events.
//!
//! Topic and queues are FIFO because one entity's events must be applied in order: the message
//! group is the entity's key and the de-duplication id the event's id, so SNS also drops an event
//! the relay publishes twice within five minutes. (SQS orders only within a message group; across
//! entities, order is kept only as far as the broker happens to keep it, as moto does.)
//!
//! A message is deleted only after it was applied. One to retry is released again after a
//! backoff; one that can never be applied, or that kept failing [`MAX_ATTEMPTS`] times, is copied
//! to `<namespace><group>-dead-letter.fifo` with an `error` attribute saying why, then deleted.
//! SQS's own redrive policy moves to the same queue a message that keeps crashing its consumer.
//!
//! Nothing connects before first use, so a service starts while its broker is down; both sides
//! recover from errors by themselves: the publisher creates the topic again on its next publish
//! (the relay keeps what was committed meanwhile), the consumer declares its queue again and goes
//! on with a backoff. AWS keeps topics, queues and subscriptions; a test server that forgets
//! them when it restarts (moto) drops what is published after the topic is created again and
//! before each group's consumer has subscribed its queue again.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`);
//! the SDK's other credential sources (profiles, instance roles) are not consulted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use contracts::Envelope;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::{self, credentials, describe, timeouts};
use crate::{Bus, BusError, Handler, Subscription};

pub use crate::MAX_ATTEMPTS;

mod consume;
mod declare;
mod publish;
mod wire;
/// After this many receives SQS itself moves a message to the dead-letter queue: a safety net for
/// one that crashes its consumer before it can be parked with a reason.
const MAX_RECEIVES: u32 = MAX_ATTEMPTS + 5;
/// How long a received message stays hidden from other consumers. Messages to retry, and those a
/// consumer holds when it shuts down, are released at once, so this only matters when a consumer
/// dies with messages in hand: they come again after this long.
const VISIBILITY_TIMEOUT_SECONDS: u32 = 30;
/// How long a long poll waits for messages unless told otherwise (SQS allows at most 20 s).
const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// On shutdown, how long to let a receive in flight finish, so that messages it is returning just
/// then can be released instead of staying hidden for the visibility timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How often a consumer asks how many messages wait in its queue (at most once per receive).
const LAG_EVERY: Duration = Duration::from_secs(5);
/// Most messages per SNS publish, SQS receive, delete or visibility change.
const BATCH: usize = 10;
/// Most bytes per SNS publish call, all messages and attributes together.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most message attributes per message on SQS.
const MAX_ATTRIBUTES: usize = 10;

const EVENT_NAME: &str = "event_name";
const MESSAGE_ID: &str = "message_id";
const KEY: &str = "entity_key";
const OCCURRED_AT: &str = "occurred_at";
const TRACE: &str = "traceparent";
const ERROR: &str = "error";

#[derive(Clone)]
pub struct SqsBus {
    inner: Arc<Inner>,
    /// How long one receive waits for messages (long polling).
    wait: Duration,
}

struct Inner {
    /// Prefixed to the topic and queue names; empty in production, unique per test run.
    namespace: String,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    /// The topic's ARN once created; forgotten after a failed publish, so that the next one
    /// creates the topic again if the broker lost it.
    topic: Mutex<Option<String>>,
}

/// A consuming group's queues.
struct Queues {
    url: String,
    dead: String,
}

impl SqsBus {
    /// A bus on the broker at `url`: `sqs://HOST:PORT` for an endpoint of one's own over HTTP
    /// (moto, LocalStack), `sqs://` or `sqs://aws` for AWS's own endpoints; optionally
    /// `?region=eu-west-1` (default: `AWS_REGION`, else `us-east-1`). Nothing is connected yet: a
    /// service starts even when its broker is not up.
    pub fn new(url: &str) -> Result<Self, BusError> {
        Self::with_namespace(url, "")
    }

    pub fn with_namespace(url: &str, namespace: &str) -> Result<Self, BusError> {
        let (endpoint, region) = parse_url(url)
            .map_err(|e| BusError::Unavailable(format!("invalid SQS URL {url:?}: {e}")))?;
        let credentials = credentials(endpoint.is_some())
            .map_err(|e| BusError::Unavailable(format!("SQS URL {url:?}: {e}")))?;
        let http = aws::https_client();
        Ok(Self {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                sns: sns_client(&endpoint, &region, &credentials, &http),
                sqs: sqs_client(&endpoint, &region, &credentials, &http),
                topic: Mutex::new(None),
            }),
            wait: DEFAULT_WAIT,
        })
    }

    /// How long one receive waits for messages before asking again (at most 20 s, the default).
    /// A consumer stops within half a second either way, but a long poll it abandons may still
    /// take a message that arrives meanwhile, which then stays hidden for the visibility timeout
    /// (30 s, order kept): tests, which restart consumers often, use a short wait.
    pub fn with_wait_time(mut self, wait: Duration) -> Self {
        self.wait = wait.min(DEFAULT_WAIT);
        self
    }

    fn topic_name(&self) -> String {
        format!("{}events.fifo", self.inner.namespace)
    }

    fn queue_name(&self, group: &str) -> String {
        format!("{}{group}.fifo", self.inner.namespace)
    }

    fn dead_letter_name(&self, group: &str) -> String {
        format!("{}{group}-dead-letter.fifo", self.inner.namespace)
    }
}

/// The endpoint (None: AWS's own) and region `url` names.
fn parse_url(url: &str) -> Result<(Option<String>, String), String> {
    let rest = url
        .strip_prefix("sqs://")
        .ok_or("expected sqs://HOST:PORT, or sqs://aws for AWS")?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '@']) {
        return Err("expected no path and no user name: sqs://HOST:PORT".into());
    }
    let endpoint = match authority {
        "" | "aws" => None,
        host => Some(format!("http://{host}")),
    };
    let mut region = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("region", value)) if !value.is_empty() => region = Some(value.to_owned()),
            _ => {
                return Err(format!(
                    "unknown parameter {pair:?} (only region=… is known)"
                ));
            }
        }
    }
    Ok((endpoint, aws::region(region)))
}

fn sns_client(
    endpoint: &Option<String>,
    region: &str,
    credentials: &Credentials,
    http: &SharedHttpClient,
) -> aws_sdk_sns::Client {
    let mut config = aws_sdk_sns::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials.clone())
        .http_client(http.clone())
        .timeout_config(timeouts(Duration::from_secs(10)));
    config.set_endpoint_url(endpoint.clone());
    aws_sdk_sns::Client::from_conf(config.build())
}

fn sqs_client(
    endpoint: &Option<String>,
    region: &str,
    credentials: &Credentials,
    http: &SharedHttpClient,
) -> aws_sdk_sqs::Client {
    let mut config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials.clone())
        .http_client(http.clone())
        // Long enough for the longest long poll.
        .timeout_config(timeouts(DEFAULT_WAIT + Duration::from_secs(10)));
    config.set_endpoint_url(endpoint.clone());
    aws_sdk_sqs::Client::from_conf(config.build())
}

#[async_trait]
impl Bus for SqsBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), BusError> {
        // Held throughout, so that concurrent publishes do not interleave.
        let mut topic = self.inner.topic.lock().await;
        let arn = match topic.as_ref() {
            Some(arn) => arn.clone(),
            None => {
                let arn = self.create_topic().await.map_err(unavailable)?;
                *topic = Some(arn.clone());
                arn
            }
        };
        let result = self.publish_to(&arn, batch).await;
        if result.is_err() {
            // Create the topic again on the next publish; the relay publishes this batch again.
            *topic = None;
        }
        result.map_err(unavailable)
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), BusError> {
        self.declare_queues(subscription)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        crate::remote::keep_consuming(
            "SQS",
            self.clone(),
            subscription,
            handler,
            shutdown,
            |bus, subscription, handler, shutdown| async move {
                bus.consume(&subscription, handler.as_ref(), &shutdown)
                    .await
                    .map_err(anyhow::Error::msg)
            },
        )
    }

    async fn check(&self) -> Result<(), String> {
        self.inner
            .sqs
            .list_queues()
            .max_results(1)
            .send()
            .await
            .map_err(|e| format!("SQS: {}", describe(&e)))?;
        Ok(())
    }
}

fn unavailable(error: String) -> BusError {
    BusError::Unavailable(format!("SQS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_name_an_endpoint_or_aws() {
        let (endpoint, region) = parse_url("sqs://127.0.0.1:5000?region=eu-west-1").unwrap();
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(region, "eu-west-1");
        assert_eq!(parse_url("sqs://aws?region=eu-west-1").unwrap().0, None);
        assert_eq!(parse_url("sqs://").unwrap().0, None);
        assert!(parse_url("amqp://localhost").is_err());
        assert!(parse_url("sqs://host:1/path").is_err());
        assert!(parse_url("sqs://host:1?colour=blue").is_err());
    }
}
