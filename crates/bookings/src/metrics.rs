use std::sync::LazyLock;

use prometheus::{Histogram, IntCounterVec, register_histogram, register_int_counter_vec};

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

pub fn record_booking(booking: &crate::domain::Booking) {
    BOOKINGS_COUNT
        .with_label_values(&[&booking.event_id, &booking.event_name])
        .inc_by(u64::from(booking.seats));
    SEATS_PER_BOOKING.observe(f64::from(booking.seats));
}
