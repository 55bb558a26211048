//! What the bookings rules ([`super::rules`]) need of a store: storage primitives, each one read
//! or one write inside the store's unit of work ([`bus::Unit`]: one transaction with its inbox
//! and outbox). No primitive decides anything; the rules do. Each backend implements them in its
//! own dialect and keeps to itself only what is truly its own: how a batch of bookings reads an
//! event's seats once and writes them back at commit (SQLite, PostgreSQL), or how a conditional
//! write refused by a concurrent change is made again (MongoDB, DynamoDB).
#![allow(async_fn_in_trait)]

use contracts::{EventCreated, Hall};

use super::{Booking, BookingId, BookingStatus, Idempotency, Stock};

/// An event going on sale, as [`UnitOfWork::put_on_sale`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnSale<'a> {
    pub event_id: &'a str,
    pub name: &'a str,
    pub capacity: u32,
    /// Cancelled already: its `eventCancelled` came while it waited for its location.
    pub cancelled: bool,
    pub seats_per_customer: Option<u32>,
}

/// An event waiting for its location's halls, and whether it was cancelled meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub event: EventCreated,
    pub cancelled: bool,
}

/// The request and answer stored with an idempotency key earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    pub fingerprint: String,
    /// The [`super::BookOutcome`] as JSON.
    pub answer: String,
}

pub trait UnitOfWork: bus::Unit {
    // Idempotency keys.

    /// The answer stored for `idem`'s key, if the key was used before. A store that must keep a
    /// concurrent request with the same key from booking too claims the key here (PostgreSQL
    /// inserts it, and the other request waits on it); the others are kept apart by the write
    /// of [`UnitOfWork::record_answer`].
    async fn claim_key(
        &mut self,
        idem: &Idempotency,
        date: i64,
    ) -> Result<Option<Earlier>, Self::Error>;

    /// Stores `answer` (JSON) with a key [`UnitOfWork::claim_key`] found unused; `None`: the
    /// answer is not worth replaying, and a claim made is taken back.
    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        date: i64,
        answer: Option<&str>,
    ) -> Result<(), Self::Error>;

    // Seats.

    /// The event's seats as they stand in this unit, `None` for an event this service does not
    /// know. A store that batches bookings reads (and locks) them once per batch.
    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, Self::Error>;

    /// Takes `seats` that the rules found free in [`UnitOfWork::stock`]. The write refuses to
    /// take them if they are gone after all (a concurrent change), whatever the rules said.
    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), Self::Error>;

    /// Gives back `seats` of a released booking.
    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), Self::Error>;

    /// The seats `customer` (a [`super::Customer::limit_key`]) holds for the event, as
    /// [`UnitOfWork::hold`] last wrote them; 0 when never written.
    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, Self::Error>;

    /// Sets what `customer` holds for the event from `held` (as [`UnitOfWork::held`] read it)
    /// to `now`. The write refuses if it no longer holds `held` (a concurrent booking).
    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        held: u32,
        now: u32,
    ) -> Result<(), Self::Error>;

    // Bookings.

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), Self::Error>;

    /// Marks an active booking as `status` and returns it as it was; `None` when it is not
    /// active (then nothing changes). Of two units releasing the same booking at once, one
    /// sees it inactive.
    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, Self::Error>;

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, Self::Error>;

    /// The ids of the event's active bookings, oldest first. Read after
    /// [`UnitOfWork::stop_sale`]: no booking can be taken after that, so the list is complete.
    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<BookingId>, Self::Error>;

    // The inventory, from the events service's events.

    /// Whether the event is on sale (or cancelled) or waiting for its location.
    async fn event_known(&mut self, event_id: &str) -> Result<bool, Self::Error>;

    /// The halls of a location (a [`super::location_key`]), for an event that states no
    /// capacity; `None` until its `locationCreated` came. A store makes sure that a
    /// `locationCreated` applied at the same time either is seen here or sees the event wait.
    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, Self::Error>;

    /// Records a location's halls unless it has some already; the halls it has now (the first
    /// `locationCreated` wins).
    async fn record_halls(
        &mut self,
        location: &str,
        halls: &[Hall],
    ) -> Result<Vec<Hall>, Self::Error>;

    /// Puts an event on sale, unless it is on sale already.
    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), Self::Error>;

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), Self::Error>;

    /// The events waiting for a location, in the order of their ids.
    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, Self::Error>;

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), Self::Error>;

    /// Marks a waiting event cancelled; false when it is not waiting.
    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, Self::Error>;

    /// Marks an event on sale cancelled, after which no booking of it can commit; false for an
    /// event not on sale here.
    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, Self::Error>;
}
