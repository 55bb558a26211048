//! What the events rules ([`super::rules`]) need of a store: storage primitives inside the
//! store's unit of work ([`bus::Unit`]: one transaction with its inbox and outbox). No
//! primitive decides anything; the rules do.
#![allow(async_fn_in_trait)]

use super::{Event, Location, Sales};

pub trait UnitOfWork: bus::Unit {
    /// Stores a new location. The rules emit its `locationCreated` right after, which a store
    /// may number it by (DynamoDB keeps creation order so).
    async fn insert_location(&mut self, location: &Location) -> Result<(), Self::Error>;

    /// Stores a new event, at a location stored before or in this unit. The rules emit its
    /// `eventCreated` right after, as for a location.
    async fn insert_event(&mut self, event: &Event) -> Result<(), Self::Error>;

    async fn event(&mut self, id: &str) -> Result<Option<Event>, Self::Error>;

    /// Marks an active event cancelled; false (and nothing changed) when it is not active.
    /// Of two units cancelling one event at once, one finds it cancelled.
    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, Self::Error>;

    /// Adds `sale` to its event's figures, which start at zero.
    async fn add_sales(&mut self, sale: &Sales) -> Result<(), Self::Error>;
}
