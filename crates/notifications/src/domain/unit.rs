//! What the notifications rules ([`super::rules`]) need of a store: storage primitives, each one
//! read or one write inside the store's unit of work ([`bus::Unit`]: one transaction with its
//! inbox). No primitive decides anything; the rules do. Times are Unix milliseconds, what every
//! store keeps of a due time.
#![allow(async_fn_in_trait)]

use chrono::{DateTime, Utc};
use platform::{BookingId, EventId};

use super::{EventInfo, Mail};

/// What the service keeps of a booking from its `eventBooked`: a `bookingCancelled` names no
/// e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBooking {
    pub id: BookingId,
    pub event_id: EventId,
    pub email: String,
    pub seats: u32,
}

/// Where a mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    /// Waiting for the sender (again, after a failed attempt).
    Pending,
    Sent,
    /// Refused for good (the receiving server said the address does not exist, …); an
    /// operator's matter.
    Failed,
}

impl MailStatus {
    /// The status as the stores keep it; any other value is an error (a mail read as pending
    /// by mistake would be sent again).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// A mail with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    pub mail: Mail,
    pub status: MailStatus,
    pub attempts: u32,
}

/// The mails waiting to be sent, for the operator's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailQueue {
    /// Pending mails, due now or waiting for their next attempt.
    pub depth: u64,
    /// The earliest time a pending mail is (or was) due; `None` when none is pending.
    pub first_due: Option<DateTime<Utc>>,
}

/// A mail's state after an attempt to send it, as the rules decide it ([`super::rules::Command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// The attempts counted before this one, as [`UnitOfWork::attempts`] read them: the mail
    /// now has one more. A store whose reads lock nothing writes on condition that the count is
    /// still this, so that two senders recording at once count once.
    pub counted: u32,
    pub status: MailStatus,
    /// When the mail is next due (for a pending one).
    pub next_attempt: i64,
    /// Why the attempt failed; `None` keeps what an earlier failure left.
    pub error: Option<&'a str>,
}

impl Attempt<'_> {
    /// The attempts counted with this one.
    pub fn attempts(&self) -> u32 {
        self.counted.saturating_add(1)
    }
}

pub trait UnitOfWork: bus::Unit {
    // What the service learnt from the bus.

    /// An event this service learnt from its `eventCreated`.
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, Self::Error>;

    /// Keeps an event unless one with its id is kept already.
    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), Self::Error>;

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, Self::Error>;

    /// Keeps a booking unless one with its id is kept already.
    async fn learn_booking(&mut self, booking: &KnownBooking) -> Result<(), Self::Error>;

    // The mails.

    /// Queues `mail`, pending and due at `due`, unless a mail with its id is queued already (the
    /// same fact told twice); the store keeps the order mails were queued in.
    async fn queue_mail(&mut self, mail: &Mail, due: i64) -> Result<(), Self::Error>;

    /// Up to `limit` pending mails due at `now`, the longest due first (then the first queued).
    /// A store may leave out mails another sender is claiming at this moment (PostgreSQL skips
    /// the rows another transaction locked).
    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, Self::Error>;

    /// Makes each of these mails due at `until`, if it is still pending and due at `now`: the
    /// ids of those it took. Another sender may have taken one since [`UnitOfWork::due`] read
    /// it. (DynamoDB takes each at once, in a write of its own: a claim is no message to apply
    /// once, and a batch of them exceeds a transaction.)
    async fn take(
        &mut self,
        ids: &[String],
        now: i64,
        until: i64,
    ) -> Result<Vec<String>, Self::Error>;

    /// The attempts counted for a mail; `None` for a mail not queued. PostgreSQL locks the mail
    /// until the unit ends.
    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, Self::Error>;

    /// Writes a mail's state after an attempt; see [`Attempt`].
    async fn record_attempt(&mut self, id: &str, attempt: &Attempt<'_>) -> Result<(), Self::Error>;
}
