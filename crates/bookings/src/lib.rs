//! The bookings service: sells seats. Its inventory is built only from the `eventCreated` and
//! `eventCancelled` it receives (and the halls of each `locationCreated`, for events that state
//! no capacity: the reference's); it emits `eventBooked` and `bookingCancelled`.

// The futures of a DynamoDB unit of work nest deeper than the default allows to lay out.
#![recursion_limit = "256"]

pub mod conformance;
pub mod domain;
mod guest_limit;
mod http;
mod metrics;
pub mod replay;
pub mod store;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope};

pub use http::{Settings, openapi, router};
#[cfg(feature = "dynamodb")]
pub use store::DynamoBookingStore;
#[cfg(feature = "mongodb")]
pub use store::MongoBookingStore;
pub use store::{BookingStore, Restore, SqlBookingStore};

/// The consumer group of this service — `booking`, the reference's AMQP queue name — and what
/// it listens to.
pub fn subscription() -> bus::Subscription {
    bus::Subscription {
        group: "booking".into(),
        events: vec![
            DomainEvent::LOCATION_CREATED,
            DomainEvent::EVENT_CREATED,
            DomainEvent::EVENT_CANCELLED,
        ],
    }
}

/// Applies delivered events to the inventory.
pub struct InventoryConsumer(pub Arc<dyn BookingStore>);

#[async_trait]
impl bus::Handler for InventoryConsumer {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<bus::Outcome>> {
        bus::apply_decoded(batch, |decoded, traces| async {
            let delivered = decoded
                .into_iter()
                .zip(traces)
                .map(|((id, event), trace)| (id, store::Delivered { event, trace }))
                .collect();
            Ok(self.0.apply(delivered).await?)
        })
        .await
    }
}
