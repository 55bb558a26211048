//! Where the bookings service keeps its inventory and bookings. One trait, one module per
//! backend, one conformance suite ([`crate::conformance`]) that every backend passes.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{BookingCancelled, CancelReason, DomainEvent, Envelope, EventBooked};

use crate::domain::{
    Availability, BookOutcome, Booking, BookingStatus, Idempotency, NewBooking, SaleStatus,
};
use crate::replay::Rebuilt;

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoBookingStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoBookingStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PgBookingStore;
pub use self::sqlite::SqliteBookingStore;

pub use platform::StoreError;

/// What [`BookingStore::book`] answered, and whether it is the replay of an earlier answer to
/// the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookResult {
    pub outcome: BookOutcome,
    pub replayed: bool,
}

/// Which bookings to list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    pub user_id: Option<String>,
    pub event_id: Option<String>,
}

#[async_trait]
pub trait BookingStore: Send + Sync + 'static {
    /// Takes the seats if the event is active and has enough left, in one atomic step with the
    /// booking, its `eventBooked` and its idempotency record. A key seen before with the same
    /// request answers what it answered then and books nothing.
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError>;

    /// Cancels an active booking, returns its seats and emits `bookingCancelled`, once: a booking
    /// that is no longer active is returned unchanged. `None` for an unknown id.
    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError>;

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError>;
    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError>;
    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError>;

    /// Applies `eventCreated` / `eventCancelled` to the inventory, each message once; an event
    /// cancelled turns its active bookings into `event_cancelled`, each with a
    /// `bookingCancelled`.
    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError>;

    /// Writes a state rebuilt from the bus history (`myevents replay`) into this store, which
    /// must hold no inventory and no bookings yet, with `outbox` as the events still to publish.
    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError>;

    fn outbox(&self) -> Arc<dyn bus::Outbox>;
    async fn check(&self) -> Result<(), String>;
}

/// The `eventBooked` a booking emits if it is taken. Made before the transaction, so that the
/// transaction spends its time on SQL only.
fn booked_event(request: &NewBooking) -> Envelope {
    let booked = DomainEvent::EventBooked(EventBooked {
        event_id: request.event_id.clone(),
        user_id: request.customer.user_id.clone().unwrap_or_default(),
        booking_id: request.id.clone(),
        seats: request.seats,
        email: request.customer.email.clone(),
        booked_at: chrono::DateTime::from_timestamp(request.date, 0).unwrap_or_default(),
    });
    Envelope::new(&booked, None)
}

/// The `bookingCancelled` a released booking emits.
fn booking_cancelled(
    booking_id: &str,
    event_id: String,
    seats: u32,
    reason: CancelReason,
) -> Envelope {
    let cancelled = DomainEvent::BookingCancelled(BookingCancelled {
        booking_id: booking_id.to_owned(),
        event_id,
        seats,
        reason,
    });
    Envelope::new(&cancelled, None)
}

/// The status a booking released for `reason` ends in.
fn cancelled_status(reason: CancelReason) -> BookingStatus {
    match reason {
        CancelReason::Customer => BookingStatus::Cancelled,
        CancelReason::EventCancelled => BookingStatus::EventCancelled,
    }
}

/// The answer to a request whose idempotency key was seen before, with `fingerprint` and
/// `answer` (JSON) stored then: the same answer for the same request, `KeyReused` otherwise.
fn replay(idem: &Idempotency, fingerprint: &str, answer: &str) -> serde_json::Result<BookResult> {
    let outcome = if fingerprint == idem.fingerprint {
        serde_json::from_str(answer)?
    } else {
        BookOutcome::KeyReused
    };
    Ok(BookResult {
        outcome,
        replayed: true,
    })
}

/// Why seats were not taken, from the event's (available, status) if it is known: for the
/// stores that take seats with one conditional write per request (MongoDB, DynamoDB).
#[cfg(any(feature = "mongodb", feature = "dynamodb"))]
fn refusal(state: Option<(u32, String)>) -> BookOutcome {
    match state {
        None => BookOutcome::UnknownEvent,
        Some((_, status)) if status != "active" => BookOutcome::EventCancelled,
        Some((available, _)) => BookOutcome::NotEnoughSeats { available },
    }
}

/// How a store reports an event's seats.
fn availability(event_id: String, capacity: u32, available: u32, status: &str) -> Availability {
    Availability {
        event_id,
        capacity,
        available,
        status: if status == "active" {
            SaleStatus::Active
        } else {
            SaleStatus::Cancelled
        },
    }
}
