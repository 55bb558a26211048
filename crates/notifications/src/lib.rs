//! The notifications service: one e-mail per booking fact (booked, cancelled by the customer,
//! cancelled with its event) and a welcome per new user; the gRPC `Notificator`; registration
//! in etcd. It learns events and bookings only from the bus, like every other service.

pub mod conformance;
pub mod discovery;
pub mod domain;
pub mod grpc;
pub mod mail;
pub mod sender;
pub mod store;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope};

pub use domain::BookingLinks;
#[cfg(feature = "dynamodb")]
pub use store::DynamoNotificationStore;
#[cfg(feature = "mongodb")]
pub use store::MongoNotificationStore;
pub use store::{Delivered, MailQueue, NotificationStore, Received, SqlNotificationStore};

/// The consumer group of this service and what it listens to.
pub fn subscription() -> bus::Subscription {
    bus::Subscription {
        group: "notifications".into(),
        events: vec![
            DomainEvent::EVENT_CREATED,
            DomainEvent::EVENT_BOOKED,
            DomainEvent::BOOKING_CANCELLED,
            DomainEvent::USER_CREATED,
        ],
    }
}

/// Turns delivered facts into queued mails.
pub struct MailConsumer {
    pub store: Arc<dyn NotificationStore>,
    pub links: domain::BookingLinks,
}

#[async_trait]
impl bus::Handler for MailConsumer {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<bus::Outcome>> {
        // The decoded prefix is the batch's prefix, in order: each keeps its envelope's time.
        bus::apply_decoded(batch, |decoded, traces| async {
            let delivered = decoded
                .into_iter()
                .zip(batch)
                .zip(traces)
                .map(|(((id, event), envelope), trace)| {
                    let at = envelope.occurred_at;
                    (id, Received { event, at, trace })
                })
                .collect();
            Ok(self.store.apply(delivered, &self.links).await?)
        })
        .await
    }
}
