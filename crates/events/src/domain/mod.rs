//! Locations, halls and events, and the rules for making them. No I/O here: [`rules`]
//! decides, driving a store's [`unit::UnitOfWork`], whose primitives each backend writes in
//! its own dialect.

#[cfg(test)]
mod memory;
pub mod rules;
pub mod unit;

pub use platform::{EventId, LocationId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value a client sent that breaks a rule; the API answers 422 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hall {
    pub name: String,
    /// Where in the building (may be empty).
    pub location: String,
    #[schema(minimum = 1)]
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Location {
    #[serde(rename = "ID")]
    #[schema(value_type = String)]
    pub id: LocationId,
    pub name: String,
    pub address: String,
    pub country: String,
    /// Hours of the day, 0–24.
    #[schema(maximum = 24)]
    pub open_time: u8,
    #[schema(maximum = 24)]
    pub close_time: u8,
    pub halls: Vec<Hall>,
}

impl Location {
    pub fn hall(&self, name: &str) -> Option<&Hall> {
        self.halls.iter().find(|h| h.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Active,
    Cancelled,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
#[schema(as = Event)]
pub struct Event {
    #[serde(rename = "ID")]
    #[schema(value_type = String)]
    pub id: EventId,
    pub name: String,
    /// Minutes.
    pub duration: u32,
    /// Unix seconds.
    pub start_date: i64,
    pub end_date: i64,
    pub location: Location,
    /// The name of the hall it takes place in.
    pub hall: String,
    pub capacity: u32,
    pub status: EventStatus,
    /// The most seats one customer (a signed-in user, or a guest by e-mail address) may hold
    /// for this event, over all their bookings; absent when there is no such limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 1)]
    pub seats_per_customer: Option<u32>,
}

/// Seats sold for one event, as learned from the bookings service's events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Sales {
    #[serde(rename = "EventID")]
    #[schema(value_type = String)]
    pub event_id: EventId,
    /// Seats of bookings still active.
    pub seats_sold: i64,
    /// Bookings ever made.
    pub bookings: i64,
    /// Bookings cancelled, by customers or with their event.
    pub cancellations: i64,
}

// The input types below are decoded with every key lower-cased (`platform::ApiJson`); their
// `#[schema]` attributes document the PascalCase form and what the rules below require, so
// the OpenAPI document says what this code accepts.

/// A hall as a client sends it (keys already lower-cased).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = NewHall)]
pub struct HallInput {
    /// Unique within its location.
    #[schema(value_type = String, required = true, min_length = 1, pattern = r"\S")]
    pub name: Option<String>,
    /// Where in the building.
    #[schema(value_type = Option<String>)]
    pub location: Option<String>,
    #[schema(value_type = u32, required = true, minimum = 1)]
    pub capacity: Option<i64>,
}

/// A location as a client sends it, on its own or inside an event.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = NewLocation)]
pub struct LocationInput {
    /// Ignored when creating a location; see `LocationRef` for an event's.
    #[schema(ignore)]
    pub id: Option<String>,
    #[schema(rename = "Name", value_type = String, required = true, min_length = 1, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(rename = "Address", value_type = Option<String>)]
    pub address: Option<String>,
    #[schema(rename = "Country", value_type = Option<String>)]
    pub country: Option<String>,
    /// Hour of the day it opens (0 unless given).
    #[schema(rename = "OpenTime", value_type = Option<u8>, maximum = 24)]
    pub opentime: Option<i64>,
    /// Hour of the day it closes (24 unless given).
    #[schema(rename = "CloseTime", value_type = Option<u8>, maximum = 24)]
    pub closetime: Option<i64>,
    /// At least one; hall names are unique.
    #[schema(rename = "Halls", value_type = Vec<HallInput>, required = true, min_items = 1)]
    pub halls: Option<Vec<HallInput>>,
}

/// An event as a client sends it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = NewEvent)]
pub struct EventInput {
    #[schema(rename = "Name", value_type = String, required = true, min_length = 1, pattern = r"\S")]
    pub name: Option<String>,
    /// Minutes; EndDate − StartDate unless given.
    #[schema(rename = "Duration", value_type = Option<u32>)]
    pub duration: Option<i64>,
    /// Unix seconds, 1970 to 9999.
    #[schema(rename = "StartDate", value_type = i64, required = true, minimum = 0, maximum = 253_402_300_799_i64)]
    pub startdate: Option<i64>,
    /// Unix seconds, not before StartDate.
    #[schema(rename = "EndDate", value_type = i64, required = true, minimum = 0, maximum = 253_402_300_799_i64)]
    pub enddate: Option<i64>,
    #[schema(rename = "Location", value_type = EventLocation, required = true)]
    pub location: Option<LocationInput>,
    /// A hall of the location; may be left out when it has exactly one.
    #[schema(rename = "Hall", value_type = Option<String>)]
    pub hall: Option<String>,
    /// At most the hall's capacity, which it is unless given.
    #[schema(rename = "Capacity", value_type = Option<u32>, minimum = 1)]
    pub capacity: Option<i64>,
    /// The most seats one customer may hold for the event, over all their bookings: from 1 to
    /// its Capacity. No limit unless given.
    #[schema(rename = "SeatsPerCustomer", value_type = Option<u32>, minimum = 1)]
    pub seatspercustomer: Option<i64>,
}

/// An existing location, named by its ID.
#[derive(ToSchema)]
#[allow(dead_code)] // a shape for the OpenAPI document: EventInput decodes it as a LocationInput
pub struct LocationRef {
    #[schema(rename = "ID", min_length = 1)]
    id: String,
}

/// An event's location: an existing one by its ID, or a new one in full. `anyOf`, not the
/// `oneOf` an untagged enum would derive: a body may fit both (then the ID wins).
pub struct EventLocation;

impl utoipa::PartialSchema for EventLocation {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, Ref};
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("LocationRef"))
            .item(Ref::from_schema_name("NewLocation"))
            .description(Some(
                "An existing location ({\"ID\": …}), or a new one in full, created with the event.",
            ))
            .into()
    }
}

impl ToSchema for EventLocation {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("LocationRef".into(), LocationRef::schema()));
        schemas.push(("NewLocation".into(), LocationInput::schema()));
        <LocationRef as ToSchema>::schemas(schemas);
        <LocationInput as ToSchema>::schemas(schemas);
    }
}

/// The most a capacity or a duration may be: the largest 32-bit signed integer, so that they fit
/// the `int32` that the OpenAPI document (and every client generated from it) says they are.
pub const MAX_COUNT: i64 = i32::MAX as i64;

fn required(value: Option<String>, what: &str) -> Result<String, Invalid> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => invalid(format!("{what} is required")),
    }
}

fn hour(value: Option<i64>, what: &str, default: u8) -> Result<u8, Invalid> {
    match value {
        None => Ok(default),
        Some(h @ 0..=24) => Ok(h as u8),
        Some(h) => invalid(format!("{what} must be an hour from 0 to 24, not {h}")),
    }
}

/// A new location with a fresh id, if `input` is a valid one.
pub fn new_location(input: LocationInput, id: String) -> Result<Location, Invalid> {
    let name = required(input.name, "Name")?;
    let halls = input.halls.unwrap_or_default();
    if halls.is_empty() {
        return invalid("a location needs at least one hall in Halls");
    }
    let mut checked: Vec<Hall> = Vec::with_capacity(halls.len());
    for hall in halls {
        let hall_name = required(hall.name, "every hall's name")?;
        if checked.iter().any(|h| h.name == hall_name) {
            return invalid(format!(
                "hall names must be unique; {hall_name:?} appears twice"
            ));
        }
        let capacity = match hall.capacity {
            Some(c) if c > 0 && c <= MAX_COUNT => c as u32,
            Some(c) => {
                return invalid(format!(
                    "hall {hall_name:?}: capacity must be from 1 to {MAX_COUNT}, not {c}"
                ));
            }
            None => return invalid(format!("hall {hall_name:?}: capacity is required")),
        };
        checked.push(Hall {
            name: hall_name,
            location: hall.location.unwrap_or_default().trim().to_owned(),
            capacity,
        });
    }
    Ok(Location {
        id: id.into(),
        name,
        address: input.address.unwrap_or_default().trim().to_owned(),
        country: input.country.unwrap_or_default().trim().to_owned(),
        open_time: hour(input.opentime, "OpenTime", 0)?,
        close_time: hour(input.closetime, "CloseTime", 24)?,
        halls: checked,
    })
}

/// Places an event in a hall of `location`: the hall must exist (it may be left out when the
/// location has exactly one), and the capacity is the hall's unless a lower one is asked for.
pub fn new_event(input: EventInput, location: Location, id: String) -> Result<Event, Invalid> {
    let name = required(input.name, "Name")?;
    let (Some(start), Some(end)) = (input.startdate, input.enddate) else {
        return invalid("StartDate and EndDate (Unix seconds) are required");
    };
    // Year 9999 is as far as RFC 3339 (the dates of eventCreated) can say.
    const LAST_SECOND: i64 = 253_402_300_799;
    if !(0..=LAST_SECOND).contains(&start) || !(0..=LAST_SECOND).contains(&end) {
        return invalid("StartDate and EndDate must be Unix seconds between 1970 and 9999");
    }
    if end < start {
        return invalid("EndDate must not be before StartDate");
    }
    let duration = match input.duration {
        None => ((end - start) / 60).min(MAX_COUNT) as u32,
        Some(d) if (0..=MAX_COUNT).contains(&d) => d as u32,
        Some(d) => {
            return invalid(format!(
                "Duration must be minutes, from 0 to {MAX_COUNT}, not {d}"
            ));
        }
    };
    let hall = match input
        .hall
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
    {
        Some(name) => location
            .hall(&name)
            .cloned()
            .ok_or_else(|| Invalid(format!("location {:?} has no hall {name:?}", location.name)))?,
        None if location.halls.len() == 1 => location.halls[0].clone(),
        None => return invalid("Hall is required: this location has several halls"),
    };
    let capacity = match input.capacity {
        None => hall.capacity,
        Some(c) if c <= 0 => return invalid(format!("Capacity must be greater than 0, not {c}")),
        Some(c) if c > i64::from(hall.capacity) => {
            return invalid(format!(
                "Capacity {c} is more than hall {:?} holds ({})",
                hall.name, hall.capacity
            ));
        }
        Some(c) => c as u32,
    };
    let seats_per_customer = seats_per_customer(input.seatspercustomer, capacity)?;
    Ok(Event {
        id: id.into(),
        name,
        duration,
        start_date: start,
        end_date: end,
        location,
        hall: hall.name,
        capacity,
        status: EventStatus::Active,
        seats_per_customer,
    })
}

/// An event's limit of seats per customer, if one is asked for: from 1 to the event's
/// capacity (a larger one would limit nothing, and says the organiser meant something else).
fn seats_per_customer(value: Option<i64>, capacity: u32) -> Result<Option<u32>, Invalid> {
    match value {
        None => Ok(None),
        Some(n) if (1..=i64::from(capacity)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => invalid(format!(
            "SeatsPerCustomer must be from 1 to the event's capacity ({capacity}), not {n}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        new_location(
            LocationInput {
                name: Some("Opera".into()),
                halls: Some(vec![
                    HallInput {
                        name: Some("Main".into()),
                        capacity: Some(100),
                        ..Default::default()
                    },
                    HallInput {
                        name: Some("Small".into()),
                        capacity: Some(10),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            "l1".into(),
        )
        .unwrap()
    }

    fn input() -> EventInput {
        EventInput {
            name: Some("Tosca".into()),
            startdate: Some(1000),
            enddate: Some(8200),
            hall: Some("Main".into()),
            ..Default::default()
        }
    }

    #[test]
    fn capacity_comes_from_the_hall_unless_set_lower() {
        let e = new_event(input(), location(), "e".into()).unwrap();
        assert_eq!(
            (e.capacity, e.duration, e.status),
            (100, 120, EventStatus::Active)
        );
        let e = new_event(
            EventInput {
                capacity: Some(50),
                ..input()
            },
            location(),
            "e".into(),
        )
        .unwrap();
        assert_eq!(e.capacity, 50);
        let err = new_event(
            EventInput {
                capacity: Some(101),
                ..input()
            },
            location(),
            "e".into(),
        );
        assert!(err.unwrap_err().0.contains("more than hall"));
    }

    #[test]
    fn seats_per_customer_is_optional_and_at_most_the_capacity() {
        let e = new_event(input(), location(), "e".into()).unwrap();
        assert_eq!(e.seats_per_customer, None);
        let with = |capacity: Option<i64>, limit: i64| {
            new_event(
                EventInput {
                    capacity,
                    seatspercustomer: Some(limit),
                    ..input()
                },
                location(),
                "e".into(),
            )
        };
        assert_eq!(with(None, 1).unwrap().seats_per_customer, Some(1));
        assert_eq!(with(None, 100).unwrap().seats_per_customer, Some(100));
        assert_eq!(with(Some(50), 50).unwrap().seats_per_customer, Some(50));
        for (capacity, limit) in [(None, 0), (None, -3), (None, 101), (Some(50), 51)] {
            let err = with(capacity, limit).unwrap_err();
            assert!(err.0.contains("SeatsPerCustomer"), "{err}");
        }
        assert!(with(None, i64::MAX).is_err());
    }

    #[test]
    fn invalid_events_are_refused_with_a_reason() {
        let cases = [
            EventInput {
                name: None,
                ..input()
            },
            EventInput {
                name: Some("  ".into()),
                ..input()
            },
            EventInput {
                enddate: Some(999),
                ..input()
            },
            EventInput {
                startdate: None,
                ..input()
            },
            EventInput {
                hall: Some("Nope".into()),
                ..input()
            },
            EventInput {
                hall: None,
                ..input()
            },
            EventInput {
                capacity: Some(0),
                ..input()
            },
            EventInput {
                duration: Some(-1),
                ..input()
            },
            EventInput {
                enddate: Some(i64::MAX),
                ..input()
            },
            EventInput {
                duration: Some(MAX_COUNT + 1),
                ..input()
            },
        ];
        for case in cases {
            assert!(
                new_event(case.clone(), location(), "e".into()).is_err(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn the_hall_may_be_left_out_when_there_is_only_one() {
        let mut loc = location();
        loc.halls.truncate(1);
        let e = new_event(
            EventInput {
                hall: None,
                ..input()
            },
            loc,
            "e".into(),
        )
        .unwrap();
        assert_eq!(e.hall, "Main");
    }

    #[test]
    fn invalid_locations_are_refused() {
        let good = LocationInput {
            name: Some("X".into()),
            halls: Some(vec![HallInput {
                name: Some("A".into()),
                capacity: Some(1),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(new_location(good.clone(), "l".into()).is_ok());
        let bad = [
            LocationInput {
                name: None,
                ..good.clone()
            },
            LocationInput {
                halls: Some(vec![]),
                ..good.clone()
            },
            LocationInput {
                opentime: Some(25),
                ..good.clone()
            },
            LocationInput {
                halls: Some(vec![HallInput {
                    name: Some("A".into()),
                    capacity: Some(0),
                    ..Default::default()
                }]),
                ..good.clone()
            },
            LocationInput {
                halls: Some(vec![HallInput {
                    name: Some("A".into()),
                    capacity: Some(MAX_COUNT + 1),
                    ..Default::default()
                }]),
                ..good.clone()
            },
            LocationInput {
                halls: Some(vec![
                    HallInput {
                        name: Some("A".into()),
                        capacity: Some(1),
                        ..Default::default()
                    },
                    HallInput {
                        name: Some("A".into()),
                        capacity: Some(2),
                        ..Default::default()
                    },
                ]),
                ..good.clone()
            },
        ];
        for case in bad {
            assert!(new_location(case.clone(), "l".into()).is_err(), "{case:?}");
        }
    }
}
