//! Where the notifications service keeps what it learnt from the bus (events and bookings, to
//! address and word its mails) and the mails themselves until they are sent. One trait, one
//! module per backend.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::DomainEvent;
use tokio::sync::Notify;

use crate::domain::Mail;

pub use self::sqlite::SqliteNotificationStore;

pub use platform::StoreError;

/// Where a mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailStatus {
    /// Waiting for the sender (again, after a failed attempt).
    Pending,
    Sent,
    /// Given up after too many failed attempts; an operator's matter.
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
    /// their mail in the same transaction.
    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError>;
    /// Queues a mail asked for directly (the gRPC `SendEmail`); a mail with this id already
    /// queued is left as it is.
    async fn queue(&self, mail: Mail) -> Result<(), StoreError>;
    /// Mails due for a (new) attempt, oldest first.
    async fn due(&self, limit: usize) -> Result<Vec<Mail>, StoreError>;
    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError>;
    /// Records a failed attempt; after `give_up_after` attempts the mail is `Failed`.
    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        give_up_after: u32,
    ) -> Result<(), StoreError>;
    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError>;
    /// Woken after every commit, so the sender need not poll.
    fn committed(&self) -> Arc<Notify>;
    async fn check(&self) -> Result<(), String>;
}
