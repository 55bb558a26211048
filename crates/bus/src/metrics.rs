use std::sync::LazyLock;

use contracts::Envelope;
use platform::metrics::AgeGauge;
use prometheus::{
    HistogramVec, IntCounterVec, IntGaugeVec, register_histogram_vec, register_int_counter_vec,
    register_int_gauge_vec,
};

use crate::{Outcome, Subscription};

pub static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_events_published_total",
        "Domain events handed to the broker, by event type",
        &["type"]
    )
    .expect("metric names are static and valid")
});

pub static APPLIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_events_applied_total",
        "Domain events received by a consumer, by consumer group, type and outcome",
        &["consumer", "type", "outcome"]
    )
    .expect("metric names are static and valid")
});

pub static OUTBOX_BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "myevents_outbox_backlog",
        "Events committed by a service and not yet handed to the broker",
        &["service"]
    )
    .expect("metric names are static and valid")
});

pub static RELAY_HOLDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "myevents_outbox_relay_holding",
        "1 while this process's relay holds its service's outbox and publishes it, 0 while \
         another replica's relay does",
        &["service"]
    )
    .expect("metric names are static and valid")
});

pub static OUTBOX_OLDEST: LazyLock<AgeGauge> = LazyLock::new(|| {
    AgeGauge::register(
        "myevents_outbox_oldest_age_seconds",
        "How long ago the oldest event of a service's outbox backlog happened (0 when none waits)",
        &["service"],
    )
});

pub static PUBLISH_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "myevents_publish_duration_seconds",
        "Time the broker took to take one batch of a service's outbox",
        &["service"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
        ]
    )
    .expect("metric names are static and valid")
});

pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "myevents_consumer_lag",
        "Messages waiting in the broker for a consumer group",
        &["consumer"]
    )
    .expect("metric names are static and valid")
});

static OLDEST_UNAPPLIED: LazyLock<AgeGauge> = LazyLock::new(|| {
    AgeGauge::register(
        "myevents_consumer_oldest_unapplied_age_seconds",
        "How long ago the oldest message a consumer group received and has not applied yet \
         happened (0 when none waits)",
        &["consumer"],
    )
});

static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_messages_dead_lettered_total",
        "Messages a consumer group parked for good (dead-lettered), by event type",
        &["consumer", "type"]
    )
    .expect("metric names are static and valid")
});

/// A consumer group starts: its series exist from now on, at zero, so that a rate or an alert
/// sees the first dead letter as an increase.
pub fn subscribed(subscription: &Subscription) {
    let group = subscription.group.as_str();
    for name in &subscription.events {
        DEAD_LETTERED.with_label_values(&[group, name]);
    }
    OLDEST_UNAPPLIED.set(&[group], None);
}

pub fn record_outcome(consumer: &str, name: &str, outcome: &Outcome) {
    let label = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Retry(_) => "retry",
        Outcome::Poison(_) => "parked",
    };
    APPLIED.with_label_values(&[consumer, name, label]).inc();
}

/// `waiting` are the messages `consumer` has received and not applied (yet): on receipt, the
/// whole batch; after handling it, those to be delivered again.
pub fn unapplied<'a>(consumer: &str, waiting: impl IntoIterator<Item = &'a Envelope>) {
    let oldest = waiting.into_iter().map(|e| e.occurred_at).min();
    OLDEST_UNAPPLIED.set(&[consumer], oldest);
}

/// A message of type `name` is parked where an operator finds it (a dead-letter queue or topic,
/// the embedded log's `dead_letters`).
pub fn dead_lettered(consumer: &str, name: &str) {
    DEAD_LETTERED.with_label_values(&[consumer, name]).inc();
}
