//! Rebuilding the bookings service's state from the history of the bus (`myevents replay`).
//!
//! Everything the service holds except idempotency records can be told from the events on the
//! bus: the inventory from `eventCreated` / `eventCancelled` (and, for events that state no
//! capacity, the halls of their `locationCreated`), the bookings from the service's own
//! `eventBooked` / `bookingCancelled`. The fold here is pure and order-tolerant: the seats left
//! are computed at the end (capacity minus the seats of active bookings), so it does not matter
//! whether a broker delivered one event's history before or after another's, and a message seen
//! twice (a relay that published again after a crash) counts once.

use std::collections::{BTreeMap, HashMap, HashSet};

use contracts::{CancelReason, DomainEvent, EventCreated, Hall};

use crate::domain::{
    BookingId, BookingStatus, Customer, EventId, Placement, UserId, location_key, placement,
};

/// One event's seats as rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltEvent {
    pub event_id: EventId,
    pub name: String,
    pub capacity: u32,
    pub available: u32,
    pub cancelled: bool,
    pub per_customer: Option<u32>,
}

/// One booking as rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltBooking {
    pub id: BookingId,
    pub event_id: EventId,
    pub seats: u32,
    pub date: i64,
    pub status: BookingStatus,
    pub user_id: Option<UserId>,
    pub email: String,
}

/// A location's halls as `locationCreated` announced them, under its [`location_key`].
#[derive(Debug, Clone, PartialEq)]
pub struct RebuiltLocation {
    pub key: String,
    pub halls: Vec<Hall>,
}

/// An event that waits for its location's `locationCreated` to know its seats.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingEvent {
    pub event: EventCreated,
    /// Its `eventCancelled` came first: it goes on sale cancelled.
    pub cancelled: bool,
}

/// What a replay rebuilt, ready for a store to write into an empty database.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rebuilt {
    pub inventory: Vec<RebuiltEvent>,
    pub locations: Vec<RebuiltLocation>,
    pub waiting: Vec<WaitingEvent>,
    /// In booking-id order, which is time order (UUIDv7).
    pub bookings: Vec<RebuiltBooking>,
    /// What each customer holds of each event with a limit per customer: (event id, customer
    /// as [`crate::domain::Customer::limit_key`], seats of their active bookings).
    pub holdings: Vec<(EventId, String, u32)>,
    /// Every message id folded in, for the inbox: a redelivery after the replay changes nothing.
    pub message_ids: Vec<String>,
    /// `bookingCancelled` owed to the other services: bookings of a cancelled event that the
    /// history shows still active (the live service had not applied the `eventCancelled` yet).
    pub owed: Vec<DomainEvent>,
    /// Facts the history could not place (a booking of an event it never created, …), each
    /// said in words for the operator.
    pub ignored: Vec<String>,
}

/// Folds the bus history into the bookings service's state; see the module comment.
#[derive(Debug, Default)]
pub struct Rebuild {
    /// The first `eventCreated` of each event; placed in [`Rebuild::finish`], once every
    /// location is known.
    created: BTreeMap<String, EventCreated>,
    /// Halls by location key; the first `locationCreated` of a location wins.
    locations: BTreeMap<String, Vec<Hall>>,
    cancelled_events: HashSet<String>,
    bookings: BTreeMap<String, RebuiltBooking>,
    /// Booking id → the status its `bookingCancelled` gave it.
    cancellations: HashMap<String, BookingStatus>,
    message_ids: Vec<String>,
    seen: HashSet<String>,
    ignored: Vec<String>,
    owed: Vec<DomainEvent>,
}

impl Rebuild {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn apply(&mut self, message_id: &str, event: &DomainEvent) {
        if !self.seen.insert(message_id.to_owned()) {
            return;
        }
        self.message_ids.push(message_id.to_owned());
        match event {
            DomainEvent::EventCreated(created) => {
                // The first eventCreated of an event wins, as in the live consumer.
                self.created
                    .entry(created.id.clone())
                    .or_insert_with(|| created.clone());
            }
            DomainEvent::LocationCreated(location) => {
                self.locations
                    .entry(location_key(&location.id))
                    .or_insert_with(|| location.halls.clone());
            }
            DomainEvent::EventCancelled(cancelled) => {
                self.cancelled_events.insert(cancelled.id.clone());
            }
            DomainEvent::EventBooked(booked) => {
                self.bookings
                    .entry(booked.booking_id.clone())
                    .or_insert_with(|| RebuiltBooking {
                        id: booked.booking_id.as_str().into(),
                        event_id: booked.event_id.as_str().into(),
                        seats: booked.seats,
                        date: booked.booked_at.timestamp(),
                        status: BookingStatus::Active,
                        user_id: Some(booked.user_id.as_str().into())
                            .filter(|u: &UserId| !u.is_empty()),
                        email: booked.email.clone(),
                    });
            }
            DomainEvent::BookingCancelled(cancelled) => {
                let status = match cancelled.reason {
                    CancelReason::Customer => BookingStatus::Cancelled,
                    CancelReason::EventCancelled => BookingStatus::EventCancelled,
                };
                // A booking is cancelled once; the first cancellation is the one that happened.
                self.cancellations
                    .entry(cancelled.booking_id.clone())
                    .or_insert(status);
            }
            DomainEvent::UserCreated(_) => {}
        }
    }

    pub fn finish(mut self) -> Rebuilt {
        let mut events = BTreeMap::new();
        let mut waiting = Vec::new();
        for (id, created) in std::mem::take(&mut self.created) {
            let halls = self.locations.get(&location_key(&created.location_id));
            let cancelled = self.cancelled_events.remove(&id);
            match placement(&created, halls.map(Vec::as_slice)) {
                Placement::OnSale(capacity) => {
                    let event = RebuiltEvent {
                        event_id: id.as_str().into(),
                        name: created.name,
                        capacity,
                        available: capacity,
                        cancelled,
                        per_customer: created.seats_per_customer,
                    };
                    events.insert(id, event);
                }
                Placement::AwaitsLocation => waiting.push(WaitingEvent {
                    event: created,
                    cancelled,
                }),
                Placement::Unsellable(why) => self
                    .ignored
                    .push(format!("{why} (the live service does not sell it either)")),
            }
        }
        for id in &self.cancelled_events {
            self.ignored
                .push(format!("eventCancelled {id} names an event never created"));
        }
        let mut bookings = Vec::with_capacity(self.bookings.len());
        let mut holdings = BTreeMap::new();
        for (id, mut booking) in self.bookings {
            if let Some(status) = self.cancellations.get(&id) {
                booking.status = *status;
            }
            let Some(event) = events.get_mut(booking.event_id.as_str()) else {
                self.ignored.push(format!(
                    "booking {id} is of event {}, which was never created",
                    booking.event_id
                ));
                continue;
            };
            if booking.status == BookingStatus::Active && event.cancelled {
                // What the live consumer does on eventCancelled, and tells the other services.
                booking.status = BookingStatus::EventCancelled;
                self.owed
                    .push(DomainEvent::BookingCancelled(contracts::BookingCancelled {
                        booking_id: id.clone(),
                        event_id: booking.event_id.to_string(),
                        seats: booking.seats,
                        reason: CancelReason::EventCancelled,
                    }));
            }
            if booking.status == BookingStatus::Active {
                if booking.seats > event.available {
                    // Cannot happen with a history this service wrote; said rather than hidden.
                    self.ignored.push(format!(
                        "booking {id} takes {} seats but only {} are left of event {}",
                        booking.seats, event.available, event.event_id
                    ));
                    continue;
                }
                event.available -= booking.seats;
                let customer = Customer {
                    user_id: booking.user_id.clone(),
                    email: platform::Email::parse(&booking.email).ok(),
                };
                if event.per_customer.is_some()
                    && let Some(customer) = customer.limit_key()
                {
                    *holdings
                        .entry((booking.event_id.clone(), customer))
                        .or_insert(0) += booking.seats;
                }
            }
            bookings.push(booking);
        }
        Rebuilt {
            inventory: events.into_values().collect(),
            locations: (self.locations.into_iter())
                .map(|(key, halls)| RebuiltLocation { key, halls })
                .collect(),
            waiting,
            bookings,
            holdings: (holdings.into_iter())
                .map(|((event, customer), seats)| (event, customer, seats))
                .collect(),
            message_ids: self.message_ids,
            owed: self.owed,
            ignored: self.ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use contracts::{
        BookingCancelled, CancelReason, DomainEvent, EventBooked, EventCancelled, EventCreated,
        Hall, LocationCreated,
    };

    use super::{Rebuild, Rebuilt, WaitingEvent};
    use crate::domain::BookingStatus;

    /// What `history` rebuilds to, after checking that the reverse order rebuilds the same: a
    /// replay must not depend on the order the broker hands messages over.
    fn rebuilt_in_either_order(history: &[(&str, DomainEvent)]) -> Rebuilt {
        let mut forwards = Rebuild::new();
        let mut backwards = Rebuild::new();
        for (id, event) in history {
            forwards.apply(id, event);
        }
        for (id, event) in history.iter().rev() {
            backwards.apply(id, event);
        }
        let forwards = forwards.finish();
        let mut backwards = backwards.finish();
        backwards.message_ids.reverse();
        assert_eq!(forwards, backwards);
        forwards
    }

    fn created(id: &str, capacity: u32) -> DomainEvent {
        DomainEvent::EventCreated(EventCreated {
            id: id.into(),
            name: format!("Show {id}"),
            location_id: "l".into(),
            start_date: DateTime::from_timestamp(1, 0).unwrap(),
            end_date: DateTime::from_timestamp(2, 0).unwrap(),
            hall: "Main".into(),
            capacity: Some(capacity),
            seats_per_customer: None,
        })
    }

    fn booked(event: &str, booking: &str, seats: u32) -> DomainEvent {
        DomainEvent::EventBooked(EventBooked {
            event_id: event.into(),
            user_id: String::new(),
            booking_id: booking.into(),
            seats,
            email: "g@example.com".into(),
            booked_at: DateTime::from_timestamp(100, 0).unwrap(),
        })
    }

    fn cancelled(event: &str, booking: &str, seats: u32, reason: CancelReason) -> DomainEvent {
        DomainEvent::BookingCancelled(BookingCancelled {
            booking_id: booking.into(),
            event_id: event.into(),
            seats,
            reason,
        })
    }

    #[test]
    fn seats_left_are_capacity_minus_active_bookings_whatever_the_order() {
        let history = [
            ("m1", created("e1", 10)),
            ("m2", booked("e1", "b1", 3)),
            ("m3", booked("e1", "b2", 4)),
            ("m4", cancelled("e1", "b1", 3, CancelReason::Customer)),
            ("m5", created("e2", 5)),
            ("m6", booked("e2", "b3", 5)),
            (
                "m7",
                DomainEvent::EventCancelled(EventCancelled { id: "e2".into() }),
            ),
            ("m8", cancelled("e2", "b3", 5, CancelReason::EventCancelled)),
        ];
        let forwards = rebuilt_in_either_order(&history);

        assert!(forwards.ignored.is_empty(), "{:?}", forwards.ignored);
        let e1 = &forwards.inventory[0];
        assert_eq!((e1.capacity, e1.available, e1.cancelled), (10, 6, false));
        let e2 = &forwards.inventory[1];
        assert_eq!((e2.capacity, e2.available, e2.cancelled), (5, 5, true));
        let statuses: Vec<_> = forwards.bookings.iter().map(|b| b.status).collect();
        assert_eq!(
            statuses,
            [
                BookingStatus::Cancelled,
                BookingStatus::Active,
                BookingStatus::EventCancelled
            ]
        );
        assert_eq!(forwards.message_ids.len(), 8);
    }

    #[test]
    fn bookings_of_a_cancelled_event_end_event_cancelled_and_their_cancellation_is_owed() {
        let mut rebuild = Rebuild::new();
        rebuild.apply("m1", &created("e1", 4));
        rebuild.apply("m2", &booked("e1", "b1", 2));
        rebuild.apply("m3", &booked("e1", "b2", 1));
        rebuild.apply("m4", &cancelled("e1", "b2", 1, CancelReason::Customer));
        rebuild.apply(
            "m5",
            &DomainEvent::EventCancelled(EventCancelled { id: "e1".into() }),
        );
        let rebuilt = rebuild.finish();
        assert_eq!(rebuilt.inventory[0].available, 4);
        assert_eq!(rebuilt.bookings[0].status, BookingStatus::EventCancelled);
        assert_eq!(rebuilt.bookings[1].status, BookingStatus::Cancelled);
        assert_eq!(
            rebuilt.owed,
            [cancelled("e1", "b1", 2, CancelReason::EventCancelled)]
        );
    }

    fn reference_event(id: &str, location: &str) -> DomainEvent {
        DomainEvent::EventCreated(EventCreated {
            id: id.into(),
            name: format!("Show {id}"),
            location_id: location.into(),
            start_date: DateTime::from_timestamp(1, 0).unwrap(),
            end_date: DateTime::from_timestamp(2, 0).unwrap(),
            hall: String::new(),
            capacity: None,
            seats_per_customer: None,
        })
    }

    fn location(id: &str, capacities: &[u32]) -> DomainEvent {
        DomainEvent::LocationCreated(LocationCreated {
            id: id.into(),
            name: "Town Hall".into(),
            address: String::new(),
            country: String::new(),
            halls: capacities
                .iter()
                .enumerate()
                .map(|(i, capacity)| Hall {
                    name: format!("Hall {i}"),
                    location: String::new(),
                    capacity: *capacity,
                })
                .collect(),
        })
    }

    #[test]
    fn the_references_events_take_their_locations_seats_whatever_the_order() {
        let history = [
            ("m1", location("l1", &[100, 20])),
            ("m2", reference_event("e1", "l1")),
            ("m3", booked("e1", "b1", 5)),
            ("m4", reference_event("e2", "l2")),
            (
                "m5",
                DomainEvent::EventCancelled(EventCancelled { id: "e2".into() }),
            ),
            ("m6", location("l2", &[7])),
            ("m7", reference_event("e3", "nowhere")),
        ];
        let forwards = rebuilt_in_either_order(&history);

        assert!(forwards.ignored.is_empty(), "{:?}", forwards.ignored);
        let seats: Vec<_> = (forwards.inventory.iter())
            .map(|e| (e.event_id.as_str(), e.capacity, e.available, e.cancelled))
            .collect();
        assert_eq!(seats, [("e1", 120, 115, false), ("e2", 7, 7, true)]);
        assert_eq!(forwards.locations.len(), 2);
        assert_eq!(
            forwards.waiting,
            [WaitingEvent {
                event: match reference_event("e3", "nowhere") {
                    DomainEvent::EventCreated(e) => e,
                    _ => unreachable!(),
                },
                cancelled: false,
            }],
            "an event whose location never came still waits"
        );
    }

    #[test]
    fn a_message_seen_twice_counts_once_and_unplaceable_facts_are_reported() {
        let mut rebuild = Rebuild::new();
        rebuild.apply("m1", &created("e1", 4));
        rebuild.apply("m2", &booked("e1", "b1", 2));
        rebuild.apply("m2", &booked("e1", "b1", 2));
        // The same booking published again under a new message id (a relay retry).
        rebuild.apply("m3", &booked("e1", "b1", 2));
        rebuild.apply("m4", &booked("ghost", "b2", 1));
        let rebuilt = rebuild.finish();
        assert_eq!(rebuilt.inventory[0].available, 2);
        assert_eq!(rebuilt.bookings.len(), 1);
        assert_eq!(rebuilt.message_ids, ["m1", "m2", "m3", "m4"]);
        assert_eq!(rebuilt.ignored.len(), 1);
        assert!(rebuilt.owed.is_empty());
        assert!(
            rebuilt.ignored[0].contains("ghost"),
            "{:?}",
            rebuilt.ignored
        );
    }
}
