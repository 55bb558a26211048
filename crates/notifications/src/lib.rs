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

#[cfg(feature = "dynamodb")]
pub use store::DynamoNotificationStore;
#[cfg(feature = "mongodb")]
pub use store::MongoNotificationStore;
#[cfg(feature = "postgres")]
pub use store::PgNotificationStore;
pub use store::{Delivered, NotificationStore, SqliteNotificationStore};

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
pub struct MailConsumer(pub Arc<dyn NotificationStore>);

#[async_trait]
impl bus::Handler for MailConsumer {
    async fn handle(&self, batch: &[Envelope]) -> anyhow::Result<Vec<bus::Outcome>> {
        // The decoded prefix is the batch's prefix, in order: each keeps its envelope's time.
        bus::apply_decoded(batch, |decoded| async {
            let delivered = decoded
                .into_iter()
                .zip(batch)
                .map(|((id, event), envelope)| (id, (event, envelope.occurred_at)))
                .collect();
            Ok(self.0.apply(delivered).await?)
        })
        .await
    }
}
