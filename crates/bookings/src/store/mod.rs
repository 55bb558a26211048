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
use contracts::{
    BookingCancelled, CancelReason, DomainEvent, Envelope, EventBooked, EventCreated, Hall,
};

use crate::domain::{
    Availability, BookOutcome, Booking, BookingStatus, Idempotency, NewBooking, Placement,
    SaleStatus, placement,
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

/// A delivered event for [`BookingStore::apply`], with the `traceparent` of the span it is
/// applied in (`None` when it carries no trace): the `bookingCancelled`s that an
/// `eventCancelled` causes continue that trace.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub event: DomainEvent,
    pub trace: Option<String>,
}

impl From<DomainEvent> for Delivered {
    fn from(event: DomainEvent) -> Self {
        Self { event, trace: None }
    }
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

    /// Applies `locationCreated` / `eventCreated` / `eventCancelled` to the inventory, each
    /// message once; an event cancelled turns its active bookings into `event_cancelled`, each
    /// with a `bookingCancelled`. An `eventCreated` that states no capacity (the reference's)
    /// takes its seats from its location's halls ([`crate::domain::placement`]); if its
    /// `locationCreated` has not come yet, the event is kept waiting (not bookable, cancellable)
    /// and goes on sale in the transaction that records the location. The first
    /// `locationCreated` of a location and the first `eventCreated` of an event win.
    async fn apply(&self, batch: Vec<(String, Delivered)>)
    -> Result<Vec<bus::Outcome>, StoreError>;

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
    Envelope::new(&booked, platform::telemetry::traceparent())
}

/// The `bookingCancelled` a released booking emits, in the trace `trace` names: the customer's
/// request's, or the apply of the `eventCancelled` that released it.
fn booking_cancelled(
    booking_id: &str,
    event_id: String,
    seats: u32,
    reason: CancelReason,
    trace: Option<String>,
) -> Envelope {
    let cancelled = DomainEvent::BookingCancelled(BookingCancelled {
        booking_id: booking_id.to_owned(),
        event_id,
        seats,
        reason,
    });
    Envelope::new(&cancelled, trace)
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
fn refusal(state: Option<(u32, SaleStatus)>) -> BookOutcome {
    match state {
        None => BookOutcome::UnknownEvent,
        Some((_, SaleStatus::Cancelled)) => BookOutcome::EventCancelled,
        Some((available, SaleStatus::Active)) => BookOutcome::NotEnoughSeats { available },
    }
}

/// How a store reports an event's seats.
fn availability(
    event_id: String,
    capacity: u32,
    available: u32,
    status: SaleStatus,
) -> Availability {
    Availability {
        event_id,
        capacity,
        available,
        status,
    }
}

/// A location's halls as the stores keep them: JSON text.
fn halls_json(halls: &[Hall]) -> String {
    // A Vec of plain structs always serialises.
    serde_json::to_string(halls).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_halls(json: &str) -> Result<Vec<Hall>, String> {
    serde_json::from_str(json).map_err(|e| format!("stored halls do not parse: {e}"))
}

/// A waiting event's `eventCreated` as the stores keep it: JSON text.
fn event_json(event: &EventCreated) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned())
}

fn parse_event(json: &str) -> Result<EventCreated, String> {
    serde_json::from_str(json).map_err(|e| format!("a stored waiting event does not parse: {e}"))
}

/// The seats of a waiting event now that its location's `halls` are known; `None` if it can
/// never be sold (a location with no seats, a hall it does not have), and then it stays
/// waiting, where an operator finds it, rather than vanish.
fn seats_at(event: &EventCreated, halls: &[Hall]) -> Option<u32> {
    match placement(event, Some(halls)) {
        Placement::OnSale(seats) => Some(seats),
        Placement::AwaitsLocation => None,
        Placement::Unsellable(why) => {
            tracing::warn!(event = %event.id, "an event waiting for its location cannot be sold: {why}");
            None
        }
    }
}

/// An event's sale status as a store keeps it (`active` or `cancelled`); any other value is
/// an error, never read as either. Only the MongoDB and DynamoDB stores need it.
#[cfg(any(feature = "mongodb", feature = "dynamodb"))]
fn sale_status(value: &str) -> Result<SaleStatus, platform::UnknownValue> {
    platform::error::stored("sale status", value, SaleStatus::parse)
}
