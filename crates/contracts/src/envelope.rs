use chrono::{DateTime, Utc};

use crate::{ContractError, DomainEvent};

/// A domain event as a broker carries it: the event's own JSON plus what every message needs
/// around it — a unique id for de-duplication, when it happened, and trace context.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique per fact; consumers record it in their inbox to apply each fact once.
    pub id: String,
    pub name: String,
    /// The entity the event is about (see [`DomainEvent::key`]).
    pub key: String,
    pub occurred_at: DateTime<Utc>,
    /// W3C `traceparent` of the request that caused the event, when there was one.
    pub trace: Option<String>,
    /// The event's JSON body, exactly as on the wire.
    pub payload: String,
}

impl Envelope {
    pub fn new(event: &DomainEvent, trace: Option<String>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            name: event.name().to_owned(),
            key: event.key().to_owned(),
            occurred_at: Utc::now(),
            trace,
            payload: event.payload_json(),
        }
    }

    pub fn decode(&self) -> Result<DomainEvent, ContractError> {
        DomainEvent::decode(&self.name, &self.payload)
    }
}
