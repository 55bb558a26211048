//! Where the bookings service keeps its inventory and bookings. One trait, one module per
//! backend, one conformance suite ([`crate::conformance`]) that every backend passes.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use bus::unit::Corrupt;
use contracts::{Envelope, EventCreated, Hall};

use crate::domain::unit::Waiting;
use crate::domain::{Availability, Booking, NewBooking, SaleStatus};
use crate::replay::Rebuilt;
use platform::{EventId, UserId};

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoBookingStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoBookingStore;
pub use self::sql::SqlBookingStore;

pub use crate::domain::rules::{BookResult, Delivered};
pub use platform::StoreError;

/// Which bookings to list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    pub user_id: Option<UserId>,
    pub event_id: Option<EventId>,
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

    fn outbox(&self) -> Arc<dyn bus::Outbox>;
    async fn check(&self) -> Result<(), String>;
}

/// A store that `myevents replay` can rebuild: SQLite and PostgreSQL, whose rebuilt state can
/// take the place of the current one in one step (a file renamed, a schema renamed). MongoDB and
/// DynamoDB cannot rename a database or tables, so they do not implement it.
#[async_trait]
pub trait Restore: BookingStore {
    /// Writes a state rebuilt from the bus history into this store, which must hold no
    /// inventory and no bookings yet, with `outbox` as the events still to publish.
    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError>;
}

/// How a store reports an event's seats.
fn availability(
    event_id: EventId,
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

fn parse_halls(json: &str) -> Result<Vec<Hall>, Corrupt> {
    serde_json::from_str(json).map_err(|e| Corrupt(format!("stored halls: {e}")))
}

/// A waiting event's `eventCreated` as the stores keep it: JSON text.
fn event_json(event: &EventCreated) -> String {
    serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned())
}

/// A waiting event as a store keeps it: its `eventCreated` (JSON) and whether it was cancelled.
fn waiting(event: &str, cancelled: bool) -> Result<Waiting, Corrupt> {
    let event =
        serde_json::from_str(event).map_err(|e| Corrupt(format!("a stored waiting event: {e}")))?;
    Ok(Waiting { event, cancelled })
}

/// An event's sale status as the stores write it.
fn sale_status(cancelled: bool) -> &'static str {
    match cancelled {
        true => "cancelled",
        false => "active",
    }
}

/// An event's sale status as a store keeps it (`active` or `cancelled`); any other value is
/// an error, never read as either. Only the MongoDB and DynamoDB stores need it.
#[cfg(any(feature = "mongodb", feature = "dynamodb"))]
fn stored_sale_status(value: &str) -> Result<SaleStatus, platform::UnknownValue> {
    platform::error::stored("sale status", value, SaleStatus::parse)
}
