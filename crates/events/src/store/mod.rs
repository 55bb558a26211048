//! Where the events service keeps its state. One trait, one module per backend, one
//! conformance suite ([`crate::conformance`]) that every backend passes.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::DomainEvent;

use crate::domain::{Event, Location, Sales};

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoEventStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoEventStore;
pub use self::sql::SqlEventStore;

pub use platform::StoreError;

/// Which events to list: at most `limit`, after the event with id `after` (in creation order).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: Option<usize>,
    pub after: Option<String>,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores a location and its `locationCreated`, atomically.
    async fn create_location(&self, location: Location) -> Result<(), StoreError>;
    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError>;
    async fn locations(&self) -> Result<Vec<Location>, StoreError>;

    /// Stores an event and its `eventCreated`, and, when `with_new_location`, its location and
    /// `locationCreated` first — all in one transaction.
    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError>;
    /// Marks the event cancelled and emits `eventCancelled`, once: cancelling a cancelled event
    /// changes nothing. `None` for an unknown id.
    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError>;
    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError>;
    /// The first event created with exactly this name.
    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError>;
    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError>;

    /// Applies `eventBooked` / `bookingCancelled` to the sales figures, each message once.
    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError>;
    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError>;
    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError>;

    fn outbox(&self) -> Arc<dyn bus::Outbox>;
    /// Why storage cannot be used right now, if it cannot.
    async fn check(&self) -> Result<(), String>;
}
