//! Where the bookings service keeps its inventory and bookings. One trait, one module per
//! backend, one conformance suite ([`crate::conformance`]) that every backend passes.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope};

use crate::domain::{Availability, BookOutcome, Booking, NewBooking};
use crate::replay::Rebuilt;

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
