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

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use tokio::sync::Notify;

use crate::domain::Mail;

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoNotificationStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoNotificationStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PgNotificationStore;
pub use self::sqlite::SqliteNotificationStore;

pub use platform::StoreError;

/// A delivered message: its id, and its event with when it happened (the shape the inboxes'
/// `apply_once` takes).
pub type Delivered = (String, (DomainEvent, DateTime<Utc>));

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

/// A mail with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    pub mail: Mail,
    pub status: MailStatus,
    pub attempts: u32,
}

#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Applies delivered events, each message once: `eventCreated` and `eventBooked` teach it
    /// the event and the customer; `eventBooked`, `bookingCancelled` and `userCreated` queue
    /// their mail in the same transaction — if the fact happened after the store was first
    /// opened (less a minute for clocks): a service added to a running system, or given a
    /// fresh database, learns from the past without mailing all of it again.
    async fn apply(&self, batch: Vec<Delivered>) -> Result<Vec<bus::Outcome>, StoreError>;
    /// Queues a mail asked for directly (the gRPC `SendEmail`); a mail with this id already
    /// queued is left as it is.
    async fn queue(&self, mail: Mail) -> Result<(), StoreError>;
    /// Mails due for a (new) attempt, oldest first.
    async fn due(&self, limit: usize) -> Result<Vec<Mail>, StoreError>;
    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError>;
    /// Records a failed attempt: a `permanent` failure (the address refused) makes the mail
    /// `Failed`; another waits 2 s, 4 s, … up to 5 minutes and is tried again, without end.
    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError>;
    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError>;
    /// Woken after every commit, so the sender need not poll.
    fn committed(&self) -> Arc<Notify>;
    async fn check(&self) -> Result<(), String>;
}
