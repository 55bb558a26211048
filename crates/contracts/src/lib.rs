//! The domain events that MyEvents services exchange (SPEC §4).
//!
//! Every service depends on this crate and nothing else to talk to the others: the names and JSON
//! fields here are the wire contract, kept compatible with the reference MyEvents so that its
//! services could read ours.

mod envelope;
mod events;

pub use envelope::Envelope;
pub use events::{
    BookingCancelled, CancelReason, DomainEvent, EventBooked, EventCancelled, EventCreated, Hall,
    LocationCreated, UserCreated,
};

/// A message that cannot be turned into a [`DomainEvent`]: unknown name or a body that does not fit.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("unknown event name {0:?}")]
    UnknownEvent(String),
    #[error("malformed {name} payload: {source}")]
    Malformed {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}
