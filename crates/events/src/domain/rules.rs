//! The events service's decisions, each written once: creating a location or an event (each
//! announced with its `locationCreated` / `eventCreated`), cancelling an event (one
//! `eventCancelled`, however often it is asked), and counting the bookings service's
//! `eventBooked` / `bookingCancelled` into the sales figures. They drive a store's
//! [`UnitOfWork`] and never touch a database themselves, so they are tested here with one in
//! memory, and every backend runs them as they are.

use chrono::DateTime;
use contracts::{DomainEvent, Envelope, EventCancelled, EventCreated, LocationCreated};

use super::unit::UnitOfWork;
use super::{Event, EventStatus, Location, Sales};

/// Stores a location and its `locationCreated`.
pub async fn create_location<U: UnitOfWork>(
    unit: &mut U,
    location: &Location,
) -> Result<(), U::Error> {
    unit.insert_location(location).await?;
    unit.emit(&location_created(location)).await
}

/// Stores an event and its `eventCreated`, and, when `with_new_location`, its location and
/// `locationCreated` first.
pub async fn create_event<U: UnitOfWork>(
    unit: &mut U,
    event: &Event,
    with_new_location: bool,
) -> Result<(), U::Error> {
    if with_new_location {
        create_location(unit, &event.location).await?;
    }
    unit.insert_event(event).await?;
    unit.emit(&event_created(event)).await
}

/// Cancels an event and emits `eventCancelled`, once: cancelling a cancelled event changes
/// nothing. The event as it now stands; `None` for an unknown id.
pub async fn cancel_event<U: UnitOfWork>(
    unit: &mut U,
    id: &str,
) -> Result<Option<Event>, U::Error> {
    let Some(mut event) = unit.event(id).await? else {
        return Ok(None);
    };
    if event.status == EventStatus::Active && unit.mark_cancelled(id).await? {
        let cancelled = DomainEvent::EventCancelled(EventCancelled { id: id.to_owned() });
        unit.emit(&Envelope::new(
            &cancelled,
            platform::telemetry::traceparent(),
        ))
        .await?;
    }
    event.status = EventStatus::Cancelled;
    Ok(Some(event))
}

/// Counts an `eventBooked` / `bookingCancelled` into its event's sales figures, as
/// `bus::apply_once` asks it, message by message; any other event changes nothing.
pub struct CountSales;

impl<U: UnitOfWork> bus::unit::Apply<U, DomainEvent> for CountSales {
    async fn apply(&mut self, unit: &mut U, event: &DomainEvent) -> Result<bus::Outcome, U::Error> {
        let sale = |event_id: &str, seats_sold, bookings, cancellations| Sales {
            event_id: event_id.into(),
            seats_sold,
            bookings,
            cancellations,
        };
        let sale = match event {
            DomainEvent::EventBooked(b) => sale(&b.event_id, i64::from(b.seats), 1, 0),
            DomainEvent::BookingCancelled(b) => sale(&b.event_id, -i64::from(b.seats), 0, 1),
            _ => return Ok(bus::Outcome::Applied),
        };
        unit.add_sales(&sale).await?;
        Ok(bus::Outcome::Applied)
    }
}

fn location_created(l: &Location) -> Envelope {
    let created = DomainEvent::LocationCreated(LocationCreated {
        id: l.id.to_string(),
        name: l.name.clone(),
        address: l.address.clone(),
        country: l.country.clone(),
        halls: (l.halls.iter())
            .map(|h| contracts::Hall {
                name: h.name.clone(),
                location: h.location.clone(),
                capacity: h.capacity,
            })
            .collect(),
    });
    Envelope::new(&created, platform::telemetry::traceparent())
}

fn event_created(event: &Event) -> Envelope {
    let unix_to_utc = |seconds| DateTime::from_timestamp(seconds, 0).unwrap_or_default();
    let created = DomainEvent::EventCreated(EventCreated {
        id: event.id.to_string(),
        name: event.name.clone(),
        location_id: event.location.id.to_string(),
        start_date: unix_to_utc(event.start_date),
        end_date: unix_to_utc(event.end_date),
        hall: event.hall.clone(),
        capacity: Some(event.capacity),
        seats_per_customer: event.seats_per_customer,
    });
    Envelope::new(&created, platform::telemetry::traceparent())
}

#[cfg(test)]
mod tests {
    use bus::{apply_once, run_now};
    use contracts::{BookingCancelled, CancelReason, EventBooked};

    use super::*;
    use crate::domain::Hall;
    use crate::domain::memory::Memory;

    fn location(id: &str) -> Location {
        Location {
            id: id.into(),
            name: "Hall".into(),
            address: String::new(),
            country: "NZ".into(),
            open_time: 8,
            close_time: 23,
            halls: vec![Hall {
                name: "Main".into(),
                location: String::new(),
                capacity: 100,
            }],
        }
    }

    fn event(id: &str, location: Location) -> Event {
        Event {
            id: id.into(),
            name: format!("Show {id}"),
            duration: 90,
            start_date: 1_800_000_000,
            end_date: 1_800_005_400,
            location,
            hall: "Main".into(),
            capacity: 80,
            status: EventStatus::Active,
            seats_per_customer: Some(4),
        }
    }

    fn emitted(unit: &Memory) -> Vec<DomainEvent> {
        unit.emitted.iter().map(|e| e.decode().unwrap()).collect()
    }

    #[test]
    fn an_event_brings_its_new_location_first_and_each_is_announced() {
        let mut unit = Memory::default();
        let e1 = event("e1", location("l1"));
        run_now(create_event(&mut unit, &e1, true))
            .unwrap()
            .unwrap();
        let e2 = event("e2", location("l1"));
        run_now(create_event(&mut unit, &e2, false))
            .unwrap()
            .unwrap();
        assert_eq!(unit.state.locations, [location("l1")]);
        assert_eq!(unit.state.events, [e1, e2]);
        let [
            DomainEvent::LocationCreated(l),
            DomainEvent::EventCreated(c1),
            DomainEvent::EventCreated(c2),
        ] = &emitted(&unit)[..]
        else {
            panic!("{:?}", unit.emitted);
        };
        assert_eq!((l.id.as_str(), l.halls[0].capacity), ("l1", 100));
        assert_eq!((c1.id.as_str(), c2.id.as_str()), ("e1", "e2"));
        assert_eq!(
            (c1.location_id.as_str(), c1.capacity, c1.seats_per_customer),
            ("l1", Some(80), Some(4))
        );
        assert_eq!(c1.start_date.timestamp(), 1_800_000_000);
    }

    #[test]
    fn an_event_is_cancelled_once_and_an_unknown_one_not_at_all() {
        let mut unit = Memory::default();
        run_now(create_event(&mut unit, &event("e1", location("l")), true))
            .unwrap()
            .unwrap();
        for _ in 0..2 {
            let cancelled = run_now(cancel_event(&mut unit, "e1")).unwrap().unwrap();
            assert_eq!(cancelled.map(|e| e.status), Some(EventStatus::Cancelled));
        }
        assert_eq!(unit.state.events[0].status, EventStatus::Cancelled);
        assert_eq!(
            run_now(cancel_event(&mut unit, "nope")).unwrap().unwrap(),
            None
        );
        let cancellations = (emitted(&unit).iter())
            .filter(|e| matches!(e, DomainEvent::EventCancelled(c) if c.id == "e1"))
            .count();
        assert_eq!(cancellations, 1);
    }

    #[test]
    fn bookings_and_cancellations_count_once_each() {
        let mut unit = Memory::default();
        let booked = |seats| {
            DomainEvent::EventBooked(EventBooked {
                event_id: "e1".into(),
                user_id: String::new(),
                booking_id: "b".into(),
                seats,
                email: String::new(),
                booked_at: DateTime::from_timestamp(0, 0).unwrap_or_default(),
            })
        };
        let cancelled = DomainEvent::BookingCancelled(BookingCancelled {
            booking_id: "b".into(),
            event_id: "e1".into(),
            seats: 3,
            reason: CancelReason::Customer,
        });
        let batch = vec![
            ("m1".to_owned(), booked(3)),
            ("m2".to_owned(), booked(2)),
            ("m1".to_owned(), booked(3)),
            ("m3".to_owned(), cancelled),
        ];
        let outcomes = run_now(apply_once(&mut unit, &batch, &mut CountSales))
            .unwrap()
            .unwrap();
        use bus::Outcome::{Applied, Duplicate};
        assert_eq!(outcomes, [Applied, Applied, Duplicate, Applied]);
        let figures = Sales {
            event_id: "e1".into(),
            seats_sold: 2,
            bookings: 2,
            cancellations: 1,
        };
        assert_eq!(unit.state.sales, [figures]);
        assert!(unit.emitted.is_empty());
    }
}
