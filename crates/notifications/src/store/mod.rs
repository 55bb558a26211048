//! Where the notifications service keeps what it learnt from the bus (events and bookings, to
//! address and word its mails) and the mails themselves until they are sent. One trait, one
//! module per backend.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use tokio::sync::Notify;

use crate::domain::{BookingLinks, Fact, Mail};

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoNotificationStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoNotificationStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PgNotificationStore;
pub use self::sqlite::SqliteNotificationStore;

pub use platform::StoreError;

/// A delivered message: its id, and what it told (the shape the inboxes' `apply_once` takes).
pub type Delivered = (String, Received);

/// What a delivered message told, and what its mail needs to know of it.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: DomainEvent,
    /// When the fact happened: facts from before the store was first opened are not mailed.
    pub at: DateTime<Utc>,
    /// The `traceparent` of the span that applied the message, continued by its mail's sending.
    pub trace: Option<String>,
}

impl Received {
    /// How this fact is mailed, if it is: only when it happened at or after `since` (Unix
    /// seconds, see [`NotificationStore::apply`]).
    pub fn mailing(&self, since: i64, links: &BookingLinks) -> Option<Mailing> {
        (self.at.timestamp() >= since).then(|| Mailing {
            links: links.clone(),
            trace: self.trace.clone(),
        })
    }
}

/// What a fact's mail takes besides the fact: the links of a guest's confirmation and the trace
/// its sending continues.
#[derive(Debug, Clone)]
pub struct Mailing {
    links: BookingLinks,
    trace: Option<String>,
}

impl Mailing {
    /// `fact`'s mail; none for a guest who gave no address.
    pub fn mail(&self, fact: &Fact) -> Option<Mail> {
        fact.mail(&self.links).map(|mail| Mail {
            trace: self.trace.clone(),
            ..mail
        })
    }
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
        match s {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
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

#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Applies delivered events, each message once: `eventCreated` and `eventBooked` teach it
    /// the event and the customer; `eventBooked`, `bookingCancelled` and `userCreated` queue
    /// their mail in the same transaction — if the fact happened after the store was first
    /// opened (less a minute for clocks): a service added to a running system, or given a
    /// fresh database, learns from the past without mailing all of it again. A guest's
    /// confirmation carries the link `links` makes; a booking without an address is not mailed.
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError>;
    /// Queues a mail asked for directly (the gRPC `SendEmail`); a mail with this id already
    /// queued is left as it is.
    async fn queue(&self, mail: Mail) -> Result<(), StoreError>;
    /// Takes up to `limit` mails due for a (new) attempt, the longest due first, for this
    /// process's sender: for `lease` they are due for no other sender (a replica's), by when
    /// this one has recorded each as sent or failed — or has died, and they come due again.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError>;
    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError>;
    /// Records a failed attempt: a `permanent` failure (the address refused) makes the mail
    /// `Failed`; another waits 2 s, 4 s, … up to 5 minutes and is tried again, without end.
    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError>;
    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError>;
    async fn mail_queue(&self) -> Result<MailQueue, StoreError>;
    /// Woken after every commit, so the sender need not poll.
    fn committed(&self) -> Arc<Notify>;
    async fn check(&self) -> Result<(), String>;
}
