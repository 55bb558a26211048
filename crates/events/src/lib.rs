//! The events service: organisers' locations (with halls) and events. It emits
//! `locationCreated`, `eventCreated` and `eventCancelled`, and keeps sales figures per event from
//! the bookings service's `eventBooked` and `bookingCancelled`.

pub mod conformance;
pub mod domain;
mod http;
pub mod store;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope};

pub use http::{openapi, router};
#[cfg(feature = "dynamodb")]
pub use store::DynamoEventStore;
#[cfg(feature = "mongodb")]
pub use store::MongoEventStore;
pub use store::{EventStore, SqlEventStore};

/// The consumer group of this service and what it listens to.
pub fn subscription() -> bus::Subscription {
    bus::Subscription {
        group: "events".into(),
        events: vec![DomainEvent::EVENT_BOOKED, DomainEvent::BOOKING_CANCELLED],
    }
}

/// Applies delivered booking events to the sales figures.
pub struct SalesConsumer(pub Arc<dyn EventStore>);

#[async_trait]
impl bus::Handler for SalesConsumer {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<bus::Outcome>> {
        bus::apply_decoded(batch, |decoded, _| async {
            Ok(self.0.apply(decoded).await?)
        })
        .await
    }
}
