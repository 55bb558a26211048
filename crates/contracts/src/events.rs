use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ContractError;

/// A hall as it travels in `locationCreated`: the reference's lower-case keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hall {
    pub name: String,
    #[serde(default)]
    pub location: String,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationCreated {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub country: String,
    /// The reference's Go publisher writes a location without halls as `"halls": null`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub halls: Vec<Hall>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// The reference's `eventCreated` (`id`, `name`, `location_id`, RFC 3339 dates) plus the hall and
/// capacity that our events service adds. The reference's own message has neither: the bookings
/// service then takes the capacity from the halls of the `locationCreated` it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventCreated {
    pub id: String,
    pub name: String,
    pub location_id: String,
    pub start_date: DateTime<Utc>,
    pub end_date: DateTime<Utc>,
    #[serde(default)]
    pub hall: String,
    /// Absent in the reference's messages (see above).
    #[serde(default)]
    pub capacity: Option<u32>,
    /// The most seats one customer (a signed-in user, or a guest by e-mail address) may hold
    /// for this event; absent when there is no limit, as in the reference's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats_per_customer: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventCancelled {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventBooked {
    pub event_id: String,
    /// Empty for a guest booking, as the reference had no guests.
    #[serde(default)]
    pub user_id: String,
    pub booking_id: String,
    pub seats: u32,
    #[serde(default)]
    pub email: String,
    pub booked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Customer,
    EventCancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingCancelled {
    pub booking_id: String,
    pub event_id: String,
    pub seats: u32,
    pub reason: CancelReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub id: String,
    pub email: String,
    pub name: String,
}

/// Every fact one service tells the others.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    LocationCreated(LocationCreated),
    EventCreated(EventCreated),
    EventCancelled(EventCancelled),
    EventBooked(EventBooked),
    BookingCancelled(BookingCancelled),
    UserCreated(UserCreated),
}

impl DomainEvent {
    pub const LOCATION_CREATED: &'static str = "locationCreated";
    pub const EVENT_CREATED: &'static str = "eventCreated";
    pub const EVENT_CANCELLED: &'static str = "eventCancelled";
    pub const EVENT_BOOKED: &'static str = "eventBooked";
    pub const BOOKING_CANCELLED: &'static str = "bookingCancelled";
    pub const USER_CREATED: &'static str = "userCreated";

    /// The event name: AMQP routing key, `x-event-name` header, Kafka `eventName`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LocationCreated(_) => Self::LOCATION_CREATED,
            Self::EventCreated(_) => Self::EVENT_CREATED,
            Self::EventCancelled(_) => Self::EVENT_CANCELLED,
            Self::EventBooked(_) => Self::EVENT_BOOKED,
            Self::BookingCancelled(_) => Self::BOOKING_CANCELLED,
            Self::UserCreated(_) => Self::USER_CREATED,
        }
    }

    /// The id of the entity the event is about; brokers partition by it so that one entity's
    /// events stay in order. Bookings are keyed by their event, so that a booking and the
    /// cancellation of its event are seen in the order they happened.
    pub fn key(&self) -> &str {
        match self {
            Self::LocationCreated(e) => &e.id,
            Self::EventCreated(e) => &e.id,
            Self::EventCancelled(e) => &e.id,
            Self::EventBooked(e) => &e.event_id,
            Self::BookingCancelled(e) => &e.event_id,
            Self::UserCreated(e) => &e.id,
        }
    }

    /// The JSON body exactly as it goes on the wire.
    pub fn payload_json(&self) -> String {
        let value = match self {
            Self::LocationCreated(e) => serde_json::to_string(e),
            Self::EventCreated(e) => serde_json::to_string(e),
            Self::EventCancelled(e) => serde_json::to_string(e),
            Self::EventBooked(e) => serde_json::to_string(e),
            Self::BookingCancelled(e) => serde_json::to_string(e),
            Self::UserCreated(e) => serde_json::to_string(e),
        };
        // Plain structs of strings and numbers always serialise.
        value.unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn decode(name: &str, payload: &str) -> Result<Self, ContractError> {
        fn parse<T: serde::de::DeserializeOwned>(
            name: &str,
            payload: &str,
        ) -> Result<T, ContractError> {
            serde_json::from_str(payload).map_err(|source| ContractError::Malformed {
                name: name.to_owned(),
                source,
            })
        }
        Ok(match name {
            Self::LOCATION_CREATED => Self::LocationCreated(parse(name, payload)?),
            Self::EVENT_CREATED => Self::EventCreated(parse(name, payload)?),
            Self::EVENT_CANCELLED => Self::EventCancelled(parse(name, payload)?),
            Self::EVENT_BOOKED => Self::EventBooked(parse(name, payload)?),
            Self::BOOKING_CANCELLED => Self::BookingCancelled(parse(name, payload)?),
            Self::USER_CREATED => Self::UserCreated(parse(name, payload)?),
            other => return Err(ContractError::UnknownEvent(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_created_matches_the_reference_field_names() {
        let ev = DomainEvent::EventCreated(EventCreated {
            id: "e1".into(),
            name: "Opera".into(),
            location_id: "l1".into(),
            start_date: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            end_date: DateTime::from_timestamp(1_700_003_600, 0).unwrap(),
            hall: "Main".into(),
            capacity: Some(100),
            seats_per_customer: None,
        });
        let json: serde_json::Value = serde_json::from_str(&ev.payload_json()).unwrap();
        assert_eq!(json["location_id"], "l1");
        assert_eq!(json["start_date"], "2023-11-14T22:13:20Z");
        assert_eq!(json["capacity"], 100);
        assert_eq!(
            DomainEvent::decode("eventCreated", &ev.payload_json()).unwrap(),
            ev
        );
    }

    #[test]
    fn reference_event_created_without_our_extensions_decodes() {
        let body = r#"{"id":"x","name":"n","location_id":"l","start_date":"2024-01-01T10:00:00Z","end_date":"2024-01-01T12:00:00+02:00"}"#;
        let DomainEvent::EventCreated(ev) = DomainEvent::decode("eventCreated", body).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(ev.capacity, None);
        assert_eq!(ev.hall, "");
    }

    #[test]
    fn reference_location_created_decodes_with_or_without_halls() {
        let body = r#"{"id":"loc","name":"Hall","address":"1 Main St","country":"NZ",
                       "halls":[{"name":"Main","capacity":120},{"name":"Studio","location":"1st","capacity":30}]}"#;
        let DomainEvent::LocationCreated(location) =
            DomainEvent::decode("locationCreated", body).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(location.halls.len(), 2);
        assert_eq!(location.halls[0].location, "");
        assert_eq!(location.halls[1].capacity, 30);
        // Go marshals a nil slice as null.
        let body = r#"{"id":"loc","name":"Empty","address":"","country":"","halls":null}"#;
        let DomainEvent::LocationCreated(location) =
            DomainEvent::decode("locationCreated", body).unwrap()
        else {
            panic!("wrong variant")
        };
        assert!(location.halls.is_empty());
    }

    #[test]
    fn booking_events_use_camel_case() {
        let ev = DomainEvent::BookingCancelled(BookingCancelled {
            booking_id: "b".into(),
            event_id: "e".into(),
            seats: 2,
            reason: CancelReason::EventCancelled,
        });
        assert_eq!(
            ev.payload_json(),
            r#"{"bookingId":"b","eventId":"e","seats":2,"reason":"event_cancelled"}"#
        );
        assert_eq!(ev.key(), "e");
    }

    #[test]
    fn unknown_and_malformed_messages_are_errors_not_panics() {
        assert!(matches!(
            DomainEvent::decode("nope", "{}"),
            Err(ContractError::UnknownEvent(_))
        ));
        assert!(matches!(
            DomainEvent::decode("eventCancelled", "[1,2"),
            Err(ContractError::Malformed { .. })
        ));
    }
}
