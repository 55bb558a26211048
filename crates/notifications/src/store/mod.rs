//! Where the notifications service keeps what it learnt from the bus (events and bookings, to
//! address and word its mails) and the mails themselves until they are sent. One trait, one
//! module per backend; each runs the rules of [`crate::domain::rules`] on its unit of work and
//! offers the storage primitives of [`UnitOfWork`], nothing else.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;

use crate::domain::rules::Command;
use crate::domain::{BookingLinks, Mail};

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoNotificationStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoNotificationStore;
pub use self::sql::SqlNotificationStore;

pub use crate::domain::rules::{Delivered, Received};
pub use crate::domain::unit::{MailQueue, MailStatus, StoredMail};
pub use platform::StoreError;

/// Now, as the rules take it (Unix milliseconds).
fn now() -> i64 {
    Utc::now().timestamp_millis()
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
    /// Runs `command` in a unit of work of its own ([`crate::domain::rules::run`]): the mails it claimed, none
    /// but for a claim. What the methods below do.
    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError>;
    /// Queues a mail asked for directly (the gRPC `SendEmail`); a mail with this id already
    /// queued is left as it is.
    async fn queue(&self, mail: Mail) -> Result<(), StoreError> {
        self.run(Command::Queue(mail)).await?;
        self.committed().notify_waiters();
        Ok(())
    }
    /// Takes up to `limit` mails due for a (new) attempt, the longest due first, for this
    /// process's sender: for `lease` they are due for no other sender (a replica's), by when
    /// this one has recorded each as sent or failed — or has died, and they come due again.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError> {
        self.run(Command::Claim { limit, lease }).await
    }
    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.run(Command::Sent(ids)).await.map(drop)
    }
    /// Records a failed attempt: a `permanent` failure (the address refused) makes the mail
    /// `Failed`; another waits 2 s, 4 s, … up to 5 minutes and is tried again, without end.
    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError> {
        let (id, error) = (id.to_owned(), error.to_owned());
        let failed = Command::Failed {
            id,
            error,
            permanent,
        };
        self.run(failed).await.map(drop)
    }
    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError>;
    async fn mail_queue(&self) -> Result<MailQueue, StoreError>;
    /// Woken after every commit, so the sender need not poll.
    fn committed(&self) -> Arc<Notify>;
    async fn check(&self) -> Result<(), String>;
}
