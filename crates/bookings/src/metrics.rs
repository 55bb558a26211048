use std::sync::LazyLock;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Histogram, IntCounterVec, register_histogram, register_int_counter_vec};

use crate::domain::BookOutcome;

/// The reference's metric: seats booked per event.
pub static BOOKINGS_COUNT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_bookings_count",
        "Seats booked, by event",
        &["eventID", "eventName"]
    )
    .expect("metric names are static and valid")
});

/// The reference's metric: how many seats one booking takes.
pub static SEATS_PER_BOOKING: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "myevents_seats_per_booking",
        "Seats taken by one booking",
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    )
    .expect("metric names are static and valid")
});

const OUTCOMES: [&str; 6] = [
    "booked",
    "sold_out",
    "cancelled_event",
    "unknown_event",
    "invalid",
    "error",
];

/// Booking requests by what became of them: the booking SLO counts `error` against the good
/// answers (every other outcome is the service doing its job).
static BOOKINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let counter = register_int_counter_vec!(
        "myevents_bookings_total",
        "Booking requests answered, by outcome (booked, sold_out, cancelled_event, \
         unknown_event, invalid, error)",
        &["outcome"]
    )
    .expect("metric names are static and valid");
    // Every outcome from the start, so that a ratio has all its series before the first error.
    for outcome in OUTCOMES {
        counter.with_label_values(&[outcome]);
    }
    counter
});

pub fn record_booking(booking: &crate::domain::Booking) {
    BOOKINGS_COUNT
        .with_label_values(&[booking.event_id.as_str(), &booking.event_name])
        .inc_by(u64::from(booking.seats));
    SEATS_PER_BOOKING.observe(f64::from(booking.seats));
}

/// What the store made of a booking request; the handler puts it in the response for
/// [`count_outcome`].
#[derive(Debug, Clone, Copy)]
pub struct Outcome(&'static str);

impl Outcome {
    pub fn of(outcome: &BookOutcome) -> Outcome {
        Outcome(match outcome {
            BookOutcome::Booked { .. } => "booked",
            BookOutcome::NotEnoughSeats { .. } => "sold_out",
            BookOutcome::EventCancelled => "cancelled_event",
            BookOutcome::UnknownEvent => "unknown_event",
            BookOutcome::OverLimit { .. } => "over_limit",
            BookOutcome::CustomerRequired => "invalid",
            BookOutcome::KeyReused => "invalid",
        })
    }
}

/// Middleware of the booking route: counts every answer by outcome. An answer the store did not
/// decide is `error` when it is a 5xx (storage down, a bug) and `invalid` otherwise (a malformed
/// request, a bad token, too many guest bookings): refused for what the client sent.
pub async fn count_outcome(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let outcome = match response.extensions().get::<Outcome>() {
        _ if response.status().is_server_error() => "error",
        Some(Outcome(outcome)) => outcome,
        None => "invalid",
    };
    BOOKINGS.with_label_values(&[outcome]).inc();
    response
}

/// Makes the outcome counters exist (at zero) before the first request.
pub fn register() {
    LazyLock::force(&BOOKINGS);
}
