//! The bookings service's decisions, each written once: booking with an idempotency key,
//! releasing a booking (by its customer, or because its event was cancelled), and applying the
//! events service's `locationCreated` / `eventCreated` / `eventCancelled` to the inventory. They
//! drive a store's [`UnitOfWork`] and never touch a database themselves, so they are tested here
//! with one in memory, and every backend runs them as they are.

use contracts::{
    BookingCancelled, CancelReason, DomainEvent, Envelope, EventBooked, EventCancelled,
    EventCreated, LocationCreated,
};

use super::unit::{Earlier, OnSale, UnitOfWork};
use super::{
    BookOutcome, BookingStatus, Idempotency, NewBooking, Placement, Refused, location_key,
    placement,
};
use bus::unit::Corrupt;

/// What [`book`] answered, and whether it is the replay of an earlier answer to the same
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookResult {
    pub outcome: BookOutcome,
    pub replayed: bool,
}

/// A delivered event for [`apply`], with the `traceparent` of the span it is applied in (`None`
/// when it carries no trace): the `bookingCancelled`s that an `eventCancelled` causes continue
/// that trace.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub event: DomainEvent,
    pub trace: Option<String>,
}

impl From<DomainEvent> for Delivered {
    fn from(event: DomainEvent) -> Self {
        Self { event, trace: None }
    }
}

/// Books `request`: takes the seats if the event is on sale, has enough left and the customer
/// stays within the event's limit per customer, with the booking, its `booked` event (see
/// [`booked_event`]) and the answer for its idempotency key. A key used before answers what it
/// answered then (or `KeyReused` for a different request) and books nothing.
pub async fn book<U: UnitOfWork>(
    unit: &mut U,
    request: &NewBooking,
    booked: &Envelope,
) -> Result<BookResult, U::Error> {
    if let Some(idem) = &request.idempotency
        && let Some(earlier) = unit.claim_key(idem, request.date).await?
    {
        return Ok(replayed(idem, &earlier)?);
    }
    let outcome = match take_seats(unit, request).await? {
        Err(refused) => refused.into(),
        Ok(event_name) => {
            let booking = request.booked(event_name);
            unit.insert_booking(&booking).await?;
            unit.emit(booked).await?;
            BookOutcome::Booked { booking }
        }
    };
    if let Some(idem) = &request.idempotency {
        let answer = match outcome.is_final() {
            true => Some(serde_json::to_string(&outcome).map_err(|e| Corrupt(e.to_string()))?),
            false => None,
        };
        unit.record_answer(idem, request.date, answer.as_deref())
            .await?;
    }
    Ok(BookResult {
        outcome,
        replayed: false,
    })
}

/// Takes the seats of `request`: the event's name, or why not.
async fn take_seats<U: UnitOfWork>(
    unit: &mut U,
    request: &NewBooking,
) -> Result<Result<String, Refused>, U::Error> {
    let event_id = &request.event_id;
    let Some(mut stock) = unit.stock(event_id).await? else {
        return Ok(Err(Refused::UnknownEvent));
    };
    if let Err(refused) = stock.take(request.seats) {
        return Ok(Err(refused));
    }
    if let Some(limit) = stock.per_customer {
        let Some(customer) = request.customer.limit_key() else {
            return Ok(Err(Refused::CustomerUnknown));
        };
        let held = unit.held(event_id, &customer).await?;
        if held.saturating_add(request.seats) > limit {
            return Ok(Err(Refused::OverLimit { limit, held }));
        }
        unit.hold(event_id, &customer, held, held + request.seats)
            .await?;
    }
    unit.take(event_id, request.seats).await?;
    Ok(Ok(stock.name))
}

/// The answer to a request whose key was used before: the same answer for the same request,
/// `KeyReused` for another.
fn replayed(idem: &Idempotency, earlier: &Earlier) -> Result<BookResult, Corrupt> {
    let outcome = if earlier.fingerprint == idem.fingerprint {
        serde_json::from_str(&earlier.answer)
            .map_err(|e| Corrupt(format!("an idempotent answer: {e}")))?
    } else {
        BookOutcome::KeyReused
    };
    Ok(BookResult {
        outcome,
        replayed: true,
    })
}

/// The `eventBooked` a booking emits if it is taken, in the trace `trace` names. Made before
/// the store's transaction, so that the transaction spends its time on storage only.
pub fn booked_event(request: &NewBooking, trace: Option<String>) -> Envelope {
    let booked = DomainEvent::EventBooked(EventBooked {
        event_id: request.event_id.to_string(),
        user_id: request.customer.user_id.clone().unwrap_or_default().into(),
        booking_id: request.id.to_string(),
        seats: request.seats,
        email: request.customer.email_text().to_owned(),
        booked_at: chrono::DateTime::from_timestamp(request.date, 0).unwrap_or_default(),
    });
    Envelope::new(&booked, trace)
}

/// Cancels a booking for its customer (see [`release`]) and returns it as it now stands; `None`
/// for an unknown id. A booking no longer active is returned unchanged.
pub async fn cancel<U: UnitOfWork>(
    unit: &mut U,
    booking_id: &str,
    trace: Option<String>,
) -> Result<Option<super::Booking>, U::Error> {
    release(
        unit,
        booking_id,
        CancelReason::Customer,
        trace,
        Holdings::Unknown,
    )
    .await?;
    unit.booking(booking_id).await
}

/// Whether a release must give seats back to what its customer holds: only an event with a limit
/// per customer keeps holdings, and a cancelled event's releases know whether it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdings {
    Kept,
    None,
    Unknown,
}

/// Releases an active booking for `reason`: marks it, gives its seats back (to the event and to
/// what its customer holds of the event) and emits `bookingCancelled` in the trace `trace`
/// names. False when it was not active: seats return exactly once.
pub async fn release<U: UnitOfWork>(
    unit: &mut U,
    booking_id: &str,
    reason: CancelReason,
    trace: Option<String>,
    holdings: Holdings,
) -> Result<bool, U::Error> {
    let status = match reason {
        CancelReason::Customer => BookingStatus::Cancelled,
        CancelReason::EventCancelled => BookingStatus::EventCancelled,
    };
    let Some(booking) = unit.mark_released(booking_id, status).await? else {
        return Ok(false);
    };
    unit.give_back(&booking.event_id, booking.seats).await?;
    if holdings != Holdings::None
        && let Some(customer) = booking.customer().limit_key()
    {
        let held = unit.held(&booking.event_id, &customer).await?;
        if held > 0 {
            let now = held.saturating_sub(booking.seats);
            unit.hold(&booking.event_id, &customer, held, now).await?;
        }
    }
    let cancelled = DomainEvent::BookingCancelled(BookingCancelled {
        booking_id: booking.id.into(),
        event_id: booking.event_id.into(),
        seats: booking.seats,
        reason,
    });
    unit.emit(&Envelope::new(&cancelled, trace)).await?;
    Ok(true)
}

/// Applies an event of the events service to the inventory. An `eventCreated` that states no
/// capacity (the reference's) takes its seats from its location's halls ([`placement`]); if its
/// `locationCreated` has not come yet, the event waits (not bookable, cancellable) and goes on
/// sale when the location comes. The first `locationCreated` of a location and the first
/// `eventCreated` of an event win. An event cancelled turns its active bookings into
/// `event_cancelled`, each with a `bookingCancelled`.
pub async fn apply<U: UnitOfWork>(
    unit: &mut U,
    delivered: &Delivered,
) -> Result<bus::Outcome, U::Error> {
    match &delivered.event {
        DomainEvent::EventCreated(created) => event_created(unit, created).await,
        DomainEvent::LocationCreated(location) => location_created(unit, location).await,
        DomainEvent::EventCancelled(cancelled) => {
            event_cancelled(unit, cancelled, &delivered.trace).await
        }
        _ => Ok(bus::Outcome::Applied),
    }
}

/// [`apply`] as `bus::apply_once` asks it, message by message.
pub struct Inventory;

impl<U: UnitOfWork> bus::unit::Apply<U, Delivered> for Inventory {
    async fn apply(
        &mut self,
        unit: &mut U,
        delivered: &Delivered,
    ) -> Result<bus::Outcome, U::Error> {
        apply(unit, delivered).await
    }
}

async fn event_created<U: UnitOfWork>(
    unit: &mut U,
    created: &EventCreated,
) -> Result<bus::Outcome, U::Error> {
    // Created once; another eventCreated for it (a new message id) changes nothing.
    if unit.event_known(&created.id).await? {
        return Ok(bus::Outcome::Applied);
    }
    let location = location_key(&created.location_id);
    let halls = match created.capacity {
        Some(_) => None,
        None => unit.halls(&location).await?,
    };
    match placement(created, halls.as_deref()) {
        Placement::OnSale(capacity) => unit.put_on_sale(on_sale(created, capacity, false)).await?,
        Placement::AwaitsLocation => unit.wait_for_location(created, &location).await?,
        Placement::Unsellable(why) => return Ok(bus::Outcome::Poison(why)),
    }
    Ok(bus::Outcome::Applied)
}

async fn location_created<U: UnitOfWork>(
    unit: &mut U,
    location: &LocationCreated,
) -> Result<bus::Outcome, U::Error> {
    let key = location_key(&location.id);
    let halls = unit.record_halls(&key, &location.halls).await?;
    for waiting in unit.waiting_at(&key).await? {
        let event = &waiting.event;
        match placement(event, Some(&halls)) {
            Placement::OnSale(capacity) => {
                unit.put_on_sale(on_sale(event, capacity, waiting.cancelled))
                    .await?;
                unit.stop_waiting(&event.id).await?;
            }
            Placement::AwaitsLocation => {}
            // It stays waiting, where an operator finds it, rather than vanish.
            Placement::Unsellable(why) => {
                tracing::warn!(event = %event.id, "an event waiting for its location cannot be sold: {why}");
            }
        }
    }
    Ok(bus::Outcome::Applied)
}

async fn event_cancelled<U: UnitOfWork>(
    unit: &mut U,
    cancelled: &EventCancelled,
    trace: &Option<String>,
) -> Result<bus::Outcome, U::Error> {
    if unit.cancel_waiting(&cancelled.id).await? {
        // It goes on sale cancelled when its location comes; it has no bookings.
        return Ok(bus::Outcome::Applied);
    }
    if !unit.stop_sale(&cancelled.id).await? {
        // Its eventCreated may still be on the way (a broker without global order).
        let why = format!("event {} is not known yet", cancelled.id);
        return Ok(bus::Outcome::Retry(why));
    }
    // Read once for all its releases: most events keep no holdings to give seats back to.
    let holdings = match unit
        .stock(&cancelled.id)
        .await?
        .and_then(|s| s.per_customer)
    {
        Some(_) => Holdings::Kept,
        None => Holdings::None,
    };
    for booking_id in unit.active_bookings(&cancelled.id).await? {
        let reason = CancelReason::EventCancelled;
        release(unit, &booking_id, reason, trace.clone(), holdings).await?;
    }
    Ok(bus::Outcome::Applied)
}

fn on_sale(event: &EventCreated, capacity: u32, cancelled: bool) -> OnSale<'_> {
    OnSale {
        event_id: &event.id,
        name: &event.name,
        capacity,
        cancelled,
        seats_per_customer: event.seats_per_customer,
    }
}

#[cfg(test)]
mod tests {
    use bus::run_now;
    use contracts::{EventCancelled, Hall, LocationCreated};

    use super::*;
    use crate::domain::memory::Memory;
    use crate::domain::{Booking, Customer};

    fn event(id: &str, capacity: Option<u32>, limit: Option<u32>) -> DomainEvent {
        DomainEvent::EventCreated(EventCreated {
            id: id.into(),
            name: format!("Show {id}"),
            location_id: "l".into(),
            start_date: chrono::DateTime::from_timestamp(1, 0).unwrap_or_default(),
            end_date: chrono::DateTime::from_timestamp(2, 0).unwrap_or_default(),
            hall: String::new(),
            capacity,
            seats_per_customer: limit,
        })
    }

    fn applied(unit: &mut Memory, event: DomainEvent) -> bus::Outcome {
        let delivered = Delivered { event, trace: None };
        run_now(apply(unit, &delivered)).unwrap().unwrap()
    }

    fn request(id: &str, event_id: &str, seats: u32, email: &str, key: Option<&str>) -> NewBooking {
        let customer = Customer {
            user_id: None,
            email: platform::Email::parse(email).ok(),
        };
        let idempotency = key.map(|key| Idempotency {
            key: customer.scope_key(key),
            fingerprint: NewBooking::fingerprint(event_id, seats, &customer),
        });
        NewBooking {
            id: id.into(),
            event_id: event_id.into(),
            seats,
            date: 1_800_000_000,
            customer,
            idempotency,
        }
    }

    fn booked(unit: &mut Memory, request: &NewBooking) -> BookResult {
        let envelope = booked_event(request, None);
        run_now(book(unit, request, &envelope)).unwrap().unwrap()
    }

    fn booking(result: BookResult) -> Booking {
        match result.outcome {
            BookOutcome::Booked { booking } => booking,
            other => panic!("not booked: {other:?}"),
        }
    }

    #[test]
    fn a_booking_takes_seats_and_says_why_when_it_cannot() {
        let mut unit = Memory::default();
        let unknown = booked(&mut unit, &request("b0", "e1", 1, "a@x.io", None));
        assert_eq!(unknown.outcome, BookOutcome::UnknownEvent);
        assert_eq!(
            applied(&mut unit, event("e1", Some(3), None)),
            bus::Outcome::Applied
        );
        let first = booking(booked(&mut unit, &request("b1", "e1", 2, "a@x.io", None)));
        assert_eq!((first.seats, first.event_name.as_str()), (2, "Show e1"));
        let short = booked(&mut unit, &request("b2", "e1", 2, "a@x.io", None));
        assert_eq!(short.outcome, BookOutcome::NotEnoughSeats { available: 1 });
        assert_eq!(unit.state.available("e1"), Some(1));
        assert_eq!(unit.emitted.len(), 1, "one eventBooked");
    }

    #[test]
    fn a_key_answers_the_same_request_again_and_refuses_another() {
        let mut unit = Memory::default();
        applied(&mut unit, event("e1", Some(10), None));
        let first = booked(&mut unit, &request("b1", "e1", 2, "a@x.io", Some("k")));
        let again = booked(&mut unit, &request("b2", "e1", 2, "a@x.io", Some("k")));
        assert_eq!((again.outcome, again.replayed), (first.outcome, true));
        let other = booked(&mut unit, &request("b3", "e1", 3, "a@x.io", Some("k")));
        assert_eq!(other.outcome, BookOutcome::KeyReused);
        assert_eq!(unit.state.available("e1"), Some(8), "booked once");
        // An unknown event is not an answer worth keeping: it may come later.
        booked(&mut unit, &request("b4", "e2", 1, "a@x.io", Some("k2")));
        applied(&mut unit, event("e2", Some(1), None));
        booking(booked(
            &mut unit,
            &request("b5", "e2", 1, "a@x.io", Some("k2")),
        ));
    }

    #[test]
    fn a_customer_holds_at_most_the_limit_and_gets_it_back_on_cancelling() {
        let mut unit = Memory::default();
        applied(&mut unit, event("e1", Some(100), Some(3)));
        let first = booking(booked(&mut unit, &request("b1", "e1", 2, "a@x.io", None)));
        let over = booked(&mut unit, &request("b2", "e1", 2, "a@x.io", None));
        assert_eq!(over.outcome, BookOutcome::OverLimit { limit: 3, held: 2 });
        let nobody = booked(&mut unit, &request("b3", "e1", 1, "", None));
        assert_eq!(nobody.outcome, BookOutcome::CustomerRequired);
        booking(booked(&mut unit, &request("b4", "e1", 3, "b@x.io", None)));
        run_now(cancel(&mut unit, &first.id, None))
            .unwrap()
            .unwrap();
        booking(booked(&mut unit, &request("b5", "e1", 3, "a@x.io", None)));
        assert_eq!(unit.state.available("e1"), Some(94));
    }

    #[test]
    fn seats_return_once_whoever_releases_the_booking() {
        let mut unit = Memory::default();
        applied(&mut unit, event("e1", Some(10), None));
        let b = booking(booked(&mut unit, &request("b1", "e1", 4, "a@x.io", None)));
        let cancelled = run_now(cancel(&mut unit, &b.id, None)).unwrap().unwrap();
        assert_eq!(cancelled.map(|b| b.status), Some(BookingStatus::Cancelled));
        let reason = CancelReason::EventCancelled;
        let twice = run_now(release(&mut unit, &b.id, reason, None, Holdings::Unknown));
        assert!(!twice.unwrap().unwrap());
        assert_eq!(unit.state.available("e1"), Some(10));
        assert!(
            run_now(cancel(&mut unit, "nope", None))
                .unwrap()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_cancelled_event_releases_its_bookings_and_sells_no_more() {
        let mut unit = Memory::default();
        let cancel_event = || DomainEvent::EventCancelled(EventCancelled { id: "e1".into() });
        assert!(matches!(
            applied(&mut unit, cancel_event()),
            bus::Outcome::Retry(_)
        ));
        applied(&mut unit, event("e1", Some(10), None));
        booking(booked(&mut unit, &request("b1", "e1", 4, "a@x.io", None)));
        booking(booked(&mut unit, &request("b2", "e1", 1, "b@x.io", None)));
        assert_eq!(applied(&mut unit, cancel_event()), bus::Outcome::Applied);
        assert!(
            unit.state
                .bookings
                .iter()
                .all(|b| b.status == BookingStatus::EventCancelled)
        );
        assert_eq!(unit.state.available("e1"), Some(10));
        let late = booked(&mut unit, &request("b3", "e1", 1, "a@x.io", None));
        assert_eq!(late.outcome, BookOutcome::EventCancelled);
        let names: Vec<&str> = unit.emitted.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "eventBooked",
                "eventBooked",
                "bookingCancelled",
                "bookingCancelled"
            ]
        );
    }

    #[test]
    fn an_event_without_capacity_waits_for_its_location_and_keeps_a_cancellation() {
        let mut unit = Memory::default();
        assert_eq!(
            applied(&mut unit, event("e1", None, Some(2))),
            bus::Outcome::Applied
        );
        assert_eq!(
            applied(&mut unit, event("e2", None, None)),
            bus::Outcome::Applied
        );
        let cancel = DomainEvent::EventCancelled(EventCancelled { id: "e2".into() });
        assert_eq!(applied(&mut unit, cancel), bus::Outcome::Applied);
        assert_eq!(unit.state.available("e1"), None, "waiting, not on sale");
        let location = DomainEvent::LocationCreated(LocationCreated {
            id: "l".into(),
            name: "Hall".into(),
            address: String::new(),
            country: String::new(),
            halls: vec![Hall {
                name: "Main".into(),
                location: String::new(),
                capacity: 50,
            }],
        });
        assert_eq!(applied(&mut unit, location), bus::Outcome::Applied);
        assert_eq!(unit.state.available("e1"), Some(50));
        assert!(unit.state.waiting.is_empty());
        let e2 = booked(&mut unit, &request("b1", "e2", 1, "a@x.io", None));
        assert_eq!(e2.outcome, BookOutcome::EventCancelled);
        let over = booked(&mut unit, &request("b2", "e1", 3, "a@x.io", None));
        assert_eq!(over.outcome, BookOutcome::OverLimit { limit: 2, held: 0 });
    }
}
