//! The promises every [`Bus`] backend keeps, as one suite each backend's tests run against a real
//! broker of its kind. `open` must connect to the same broker (and the same durable state) every
//! time it is called: calling it again is how the suite restarts a service.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope, EventCancelled};
use tokio_util::sync::CancellationToken;

use crate::{Bus, Handler, Outcome, Subscription};

/// Records what it was given; can be told to fail or to refuse one message.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Envelope>>,
    applied_ids: Mutex<HashMap<String, u32>>,
    poison_key: Mutex<Option<String>>,
    fail_all: Mutex<bool>,
    /// Batches handed over, whatever became of them.
    calls: std::sync::atomic::AtomicU32,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Messages applied, first delivery only (as an inbox would), in order.
    pub fn applied(&self) -> Vec<Envelope> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn deliveries_of(&self, id: &str) -> u32 {
        self.applied_ids
            .lock()
            .map(|m| m.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn set_poison_key(&self, key: &str) {
        if let Ok(mut p) = self.poison_key.lock() {
            *p = Some(key.to_owned());
        }
    }

    /// How many times a batch was handed over, failed ones included.
    pub fn calls(&self) -> u32 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set_failing(&self, failing: bool) {
        if let Ok(mut f) = self.fail_all.lock() {
            *f = failing;
        }
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<Outcome>> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if *self
            .fail_all
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
        {
            anyhow::bail!("told to fail");
        }
        let poison = self.poison_key.lock().ok().and_then(|p| p.clone());
        let mut outcomes = Vec::new();
        let mut ids = self
            .applied_ids
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut seen = self.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for e in batch {
            if poison.as_deref() == Some(e.key.as_str()) {
                outcomes.push(Outcome::Poison("refused by the test".into()));
                continue;
            }
            let n = ids.entry(e.id.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                seen.push(e.clone());
                outcomes.push(Outcome::Applied);
            } else {
                outcomes.push(Outcome::Duplicate);
            }
        }
        Ok(outcomes)
    }
}

pub fn cancelled(id: &str) -> Envelope {
    Envelope::new(
        &DomainEvent::EventCancelled(EventCancelled { id: id.to_owned() }),
        None,
    )
}

fn subscription(group: &str) -> Subscription {
    Subscription {
        group: group.to_owned(),
        events: vec![DomainEvent::EVENT_CANCELLED],
    }
}

async fn declare(bus: &dyn Bus, groups: &[&str]) {
    for group in groups {
        bus.declare(&subscription(group))
            .await
            .expect("declare the subscription");
    }
}

/// Waits up to 10 s for `done` to hold.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Each entity's message ids in order. The promise is order per entity (Kafka partitions and
/// SQS message groups interleave different entities freely), so that is what is compared.
fn per_entity(events: Vec<Envelope>) -> HashMap<String, Vec<String>> {
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        by_key.entry(e.key).or_default().push(e.id);
    }
    by_key
}

/// A broker with history (`myevents replay`) gives back everything published, each entity's
/// messages in order, whether or not a consumer has read them, and nothing published after.
pub async fn the_history_holds_everything_published<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = open().await;
    declare(&bus, &["history"]).await;
    let sent: Vec<Envelope> = (0..40).map(|i| cancelled(&format!("h{}", i % 5))).collect();
    for chunk in sent.chunks(6) {
        bus.publish(chunk).await.expect("publish");
    }
    let history = bus.history().await.expect("read the history");
    assert_eq!(history.len(), sent.len(), "every message, once");
    assert_eq!(per_entity(history), per_entity(sent.clone()));
    // Reading it consumed nothing: a consumer group still gets every message.
    let stop = CancellationToken::new();
    let recorder = Recorder::new();
    let task = bus.subscribe(subscription("history"), recorder.clone(), stop.clone());
    eventually("the group got every message", || {
        recorder.applied().len() == sent.len()
    })
    .await;
    stop.cancel();
    let _ = task.await;
    assert_eq!(bus.history().await.expect("read again").len(), sent.len());
}

/// A broker that forgets what it delivered says so instead of replaying part of the past.
pub async fn a_broker_without_history_says_so<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = open().await;
    match bus.history().await {
        Err(crate::BusError::Unsupported(reason)) => {
            assert!(reason.contains("no history"), "{reason}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|h| h.len())),
    }
}

/// Every group gets every event, and one entity's events arrive in order.
pub async fn every_group_gets_every_event_in_order<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["fan-a", "fan-b"]).await;
    let stop = CancellationToken::new();
    let (a, b) = (Recorder::new(), Recorder::new());
    let ta = bus.subscribe(subscription("fan-a"), a.clone(), stop.clone());
    let tb = bus.subscribe(subscription("fan-b"), b.clone(), stop.clone());
    let sent: Vec<Envelope> = (0..50).map(|i| cancelled(&format!("e{}", i % 3))).collect();
    for chunk in sent.chunks(7) {
        bus.publish(chunk).await.expect("publish");
    }
    eventually("both groups have all 50", || {
        a.applied().len() == 50 && b.applied().len() == 50
    })
    .await;
    let sent_per_entity = per_entity(sent.clone());
    assert_eq!(
        per_entity(a.applied()),
        sent_per_entity,
        "group a: each entity in order"
    );
    assert_eq!(
        per_entity(b.applied()),
        sent_per_entity,
        "group b: each entity in order"
    );
    stop.cancel();
    let _ = tokio::join!(ta, tb);
}

/// A consumer that fails before acknowledging gets the same events again, and a restarted
/// consumer resumes where it acknowledged, losing nothing committed meanwhile.
pub async fn unacknowledged_events_come_again_after_restart<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["restart"]).await;
    let failing = Recorder::new();
    failing.set_failing(true);
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("restart"), failing.clone(), stop.clone());
    let first = cancelled("r");
    bus.publish(std::slice::from_ref(&first))
        .await
        .expect("publish");
    // The consumer really had the event in hand, and failed, before it goes away.
    eventually_within_a_minute("the failing consumer was handed the event", || {
        failing.calls() > 0
    })
    .await;
    stop.cancel();
    let _ = task.await;
    assert!(failing.applied().is_empty());

    // Committed while no consumer runs.
    let second = cancelled("r");
    bus.publish(std::slice::from_ref(&second))
        .await
        .expect("publish");

    let bus = Arc::new(open().await);
    let healthy = Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("restart"), healthy.clone(), stop.clone());
    eventually("the restarted consumer got both", || {
        healthy.applied().len() == 2
    })
    .await;
    assert_eq!(healthy.applied()[0].id, first.id);
    assert_eq!(healthy.applied()[1].id, second.id);
    stop.cancel();
    let _ = task.await;
}

/// The same message published twice is applied once.
pub async fn a_duplicate_is_applied_once<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["dup"]).await;
    let recorder = Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("dup"), recorder.clone(), stop.clone());
    let once = cancelled("d1");
    bus.publish(std::slice::from_ref(&once))
        .await
        .expect("publish");
    bus.publish(std::slice::from_ref(&once))
        .await
        .expect("publish again");
    // Same entity, so the marker comes after the duplicate on every backend.
    let marker = cancelled("d1");
    bus.publish(std::slice::from_ref(&marker))
        .await
        .expect("publish");
    eventually("the marker arrived", || {
        recorder.deliveries_of(&marker.id) == 1
    })
    .await;
    assert_eq!(recorder.applied().len(), 2, "the duplicate changed nothing");
    stop.cancel();
    let _ = task.await;
}

/// A message that can never be applied is parked, and the ones after it still flow.
pub async fn a_poison_message_is_parked_and_the_rest_flow<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["poison"]).await;
    let recorder = Recorder::new();
    recorder.set_poison_key("bad");
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("poison"), recorder.clone(), stop.clone());
    let batch = vec![cancelled("ok1"), cancelled("bad"), cancelled("ok2")];
    bus.publish(&batch).await.expect("publish");
    eventually("both good messages arrived", || {
        recorder.applied().len() == 2
    })
    .await;
    let mut keys: Vec<String> = recorder.applied().into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["ok1", "ok2"]);
    // What the operator sees: one dead letter, and nothing left waiting.
    let group = [("consumer", "poison")];
    let dead = [
        ("consumer", "poison"),
        ("type", DomainEvent::EVENT_CANCELLED),
    ];
    eventually("the dead letter is counted once and nothing waits", || {
        sample("myevents_messages_dead_lettered_total", &dead) == Some(1.0)
            && sample("myevents_consumer_oldest_unapplied_age_seconds", &group) == Some(0.0)
    })
    .await;
    stop.cancel();
    let _ = task.await;
}

/// What an operator sees of a group that is behind: its lag counts the messages waiting for it
/// (published before it started, so every broker can count them), and the age of the oldest it
/// received and could not apply grows; both fall to zero once they are applied.
pub async fn a_groups_lag_and_oldest_unapplied_age_show_what_waits<B, F>(open: impl Fn() -> F)
where
    B: Bus,
    F: Future<Output = B>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["lagging"]).await;
    let waiting = [cancelled("l1"), cancelled("l2"), cancelled("l3")];
    bus.publish(&waiting).await.expect("publish");
    let recorder = Recorder::new();
    recorder.set_failing(true);
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("lagging"), recorder.clone(), stop.clone());
    let group = [("consumer", "lagging")];
    let lag = || sample("myevents_consumer_lag", &group);
    let age = || sample("myevents_consumer_oldest_unapplied_age_seconds", &group);
    eventually_within_a_minute("the lag counts the three waiting", || lag() == Some(3.0)).await;
    eventually_within_a_minute("the oldest unapplied has an age", || {
        age().is_some_and(|a| a > 0.0)
    })
    .await;
    recorder.set_failing(false);
    eventually_within_a_minute("all applied, nothing waits", || {
        recorder.applied().len() == 3 && lag() == Some(0.0) && age() == Some(0.0)
    })
    .await;
    stop.cancel();
    let _ = task.await;
}

/// The value of the sample of metric `name` with exactly `labels` in this process's registry.
pub fn sample(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = prometheus::gather();
    let family = families.iter().find(|f| f.name() == name)?;
    family.get_metric().iter().find_map(|m| {
        let found: Vec<(&str, &str)> = m
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        (found == labels).then(|| match family.get_field_type() {
            prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
            _ => m.get_gauge().get_value(),
        })
    })
}

/// Publishes `envelope` the way the outbox relay does: again and again until the broker takes
/// it (it may be down for a while), giving up after a minute.
async fn publish_until_taken(bus: &dyn Bus, envelope: &Envelope) {
    for _ in 0..240 {
        if bus.publish(std::slice::from_ref(envelope)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the broker did not take a message within a minute of its restart");
}

/// Waits up to a minute for `done` to hold (a broker restart takes a while).
async fn eventually_within_a_minute(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The broker restarts under a running consumer and a publisher: the consumer reconnects by
/// itself, and what is published once the broker is back (the relay retries until then) arrives,
/// in order, after what came before. `restart` stops the broker and starts it again.
pub async fn a_broker_restart_loses_nothing_published_around_it<B, F, R>(
    open: impl Fn() -> F,
    restart: impl FnOnce() -> R,
) where
    B: Bus,
    F: Future<Output = B>,
    R: Future<Output = ()>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["survivor"]).await;
    let recorder = Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("survivor"), recorder.clone(), stop.clone());
    let before = cancelled("survivor");
    publish_until_taken(bus.as_ref(), &before).await;
    eventually("the first event arrived", || recorder.applied().len() == 1).await;

    restart().await;

    let after: Vec<Envelope> = (0..5).map(|_| cancelled("survivor")).collect();
    for envelope in &after {
        publish_until_taken(bus.as_ref(), envelope).await;
    }
    eventually_within_a_minute("the consumer reconnected and got every later event", || {
        recorder.applied().len() == 6
    })
    .await;
    let ids: Vec<String> = recorder.applied().into_iter().map(|e| e.id).collect();
    let expected: Vec<String> = std::iter::once(&before)
        .chain(&after)
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids, expected, "nothing lost, nothing reordered");
    stop.cancel();
    let _ = task.await;
}

/// Messages the broker has taken and no consumer has read yet are still there after the broker
/// restarts. For backends whose test server keeps its data across a restart (not moto's
/// in-memory SQS; see the SQS tests).
pub async fn messages_waiting_in_the_broker_survive_its_restart<B, F, R>(
    open: impl Fn() -> F,
    restart: impl FnOnce() -> R,
) where
    B: Bus,
    F: Future<Output = B>,
    R: Future<Output = ()>,
{
    let bus = Arc::new(open().await);
    declare(bus.as_ref(), &["waiting"]).await;
    let waiting: Vec<Envelope> = (0..5).map(|_| cancelled("waiting")).collect();
    bus.publish(&waiting).await.expect("publish");

    restart().await;

    let bus = Arc::new(open().await);
    let recorder = Recorder::new();
    let stop = CancellationToken::new();
    let task = bus.subscribe(subscription("waiting"), recorder.clone(), stop.clone());
    eventually_within_a_minute("the waiting events arrived after the restart", || {
        recorder.applied().len() == 5
    })
    .await;
    let ids: Vec<String> = recorder.applied().into_iter().map(|e| e.id).collect();
    let expected: Vec<String> = waiting.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, expected);
    stop.cancel();
    let _ = task.await;
}

/// Appends one envelope to an outbox in a transaction of its own; each writer of
/// [`a_reader_that_only_moves_forward_misses_no_concurrent_commit`] has one, with a handle of
/// its own, as separate processes would.
pub type Append = Box<
    dyn Fn(Envelope) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send
        + Sync,
>;

/// How densely an outbox numbers its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Strictly increasing.
    Increasing,
    /// Each the previous one plus one.
    WithoutHoles,
}

/// The relay remembers only the highest outbox position it has published, so positions must
/// become visible in increasing order even while many transactions append at once. Each of
/// `writers` commits `commits_each` envelopes while a reader of `outbox` reads on, always after
/// the last position it saw: it must miss none of them.
pub async fn a_reader_that_only_moves_forward_misses_no_concurrent_commit(
    outbox: Arc<dyn crate::Outbox>,
    writers: Vec<Append>,
    commits_each: usize,
    positions: Positions,
) {
    let count = writers.len();
    let writers: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, append)| {
            tokio::spawn(async move {
                let mut written = Vec::new();
                for i in 0..commits_each {
                    let envelope = cancelled(&format!("w{w}-{i}"));
                    written.push(envelope.id.clone());
                    append(envelope).await?;
                }
                Ok::<_, anyhow::Error>(written)
            })
        })
        .collect();

    let mut seen = std::collections::HashSet::new();
    let mut position = 0;
    let mut finished = false;
    loop {
        // Read once more after the writers are done: everything is committed by then.
        finished = finished || writers.iter().all(|w| w.is_finished());
        let batch = outbox
            .pending(position, 1000)
            .await
            .expect("outbox readable");
        for (seq, envelope) in batch {
            match positions {
                Positions::Increasing => assert!(seq > position, "positions in order"),
                Positions::WithoutHoles => {
                    assert_eq!(seq, position + 1, "positions in order, without holes")
                }
            }
            position = seq;
            seen.insert(envelope.id);
        }
        if finished {
            break;
        }
        tokio::task::yield_now().await;
    }

    let mut written = std::collections::HashSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task").expect("writes"));
    }
    assert_eq!(written.len(), count * commits_each);
    let missed = written.difference(&seen).count();
    assert_eq!(
        missed, 0,
        "events skipped by a reader that only moves forward"
    );
}

/// The relay reports an outbox's backlog from [`crate::Outbox::backlog`]: how many events wait
/// after a position, and when the first of them happened (the age an operator is alerted on).
/// `append` commits one envelope to `outbox`, which starts empty.
pub async fn the_backlog_counts_what_waits_and_dates_the_oldest(
    outbox: Arc<dyn crate::Outbox>,
    append: Append,
) {
    use crate::Backlog;
    assert_eq!(
        outbox.backlog(0).await.expect("backlog"),
        Backlog::default(),
        "an empty outbox"
    );
    // Whole seconds: every store keeps at least that precision.
    let first_at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let second_at = first_at + chrono::Duration::minutes(1);
    for (id, at) in [("oldest", first_at), ("newer", second_at)] {
        let mut envelope = cancelled(id);
        envelope.occurred_at = at;
        append(envelope).await.expect("append");
    }
    assert_eq!(
        outbox.backlog(0).await.expect("backlog"),
        Backlog {
            events: 2,
            oldest: Some(first_at)
        }
    );
    let pending = outbox.pending(0, 10).await.expect("pending");
    let positions: Vec<i64> = pending.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions.len(), 2, "{positions:?}");
    let after_first = Backlog {
        events: 1,
        oldest: Some(second_at),
    };
    assert_eq!(outbox.backlog(positions[0]).await.unwrap(), after_first);
    outbox
        .mark_published(positions[0])
        .await
        .expect("published");
    assert_eq!(outbox.backlog(positions[0]).await.unwrap(), after_first);
    assert_eq!(
        outbox.backlog(positions[1]).await.unwrap(),
        Backlog::default(),
        "nothing waits after the last position"
    );
}
