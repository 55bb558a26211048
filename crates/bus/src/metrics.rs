use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};

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

pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "myevents_consumer_lag",
        "Messages in the log after a consumer group's position",
        &["consumer"]
    )
    .expect("metric names are static and valid")
});

pub fn record_outcome(consumer: &str, name: &str, outcome: &crate::Outcome) {
    let label = match outcome {
        crate::Outcome::Applied => "applied",
        crate::Outcome::Duplicate => "duplicate",
        crate::Outcome::Retry(_) => "retry",
        crate::Outcome::Poison(_) => "parked",
    };
    APPLIED.with_label_values(&[consumer, name, label]).inc();
}
