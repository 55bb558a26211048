//! What every [`BookingStore`] backend must do, as one suite each backend's tests run against a
//! real server of its kind (SQLite: a real file). Each function takes a fresh, empty store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use contracts::{DomainEvent, Envelope, EventCancelled, EventCreated, Hall, LocationCreated};

use crate::domain::{
    BookOutcome, Booking, BookingId, BookingStatus, Customer, EventId, Idempotency, NewBooking,
    SaleStatus, UserId,
};
use crate::replay::{Rebuilt, RebuiltBooking, RebuiltEvent, RebuiltLocation, WaitingEvent};
use crate::store::{BookingFilter, BookingStore, Restore};

pub fn created(event_id: &str, capacity: u32) -> DomainEvent {
    DomainEvent::EventCreated(EventCreated {
        id: event_id.into(),
        name: format!("Show {event_id}"),
        location_id: "l".into(),
        start_date: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        end_date: DateTime::from_timestamp(1_800_003_600, 0).unwrap_or_default(),
        hall: "Main".into(),
        capacity: Some(capacity),
        seats_per_customer: None,
    })
}

/// An `eventCreated` exactly as the reference's Go events service publishes it: no hall, no
/// capacity.
pub fn reference_created(event_id: &str, location_id: &str) -> DomainEvent {
    DomainEvent::EventCreated(EventCreated {
        id: event_id.into(),
        name: format!("Show {event_id}"),
        location_id: location_id.into(),
        start_date: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        end_date: DateTime::from_timestamp(1_800_003_600, 0).unwrap_or_default(),
        hall: String::new(),
        capacity: None,
        seats_per_customer: None,
    })
}

/// A `locationCreated` with a hall of each capacity.
pub fn location(location_id: &str, capacities: &[u32]) -> DomainEvent {
    DomainEvent::LocationCreated(LocationCreated {
        id: location_id.into(),
        name: "Town Hall".into(),
        address: "1 Main St".into(),
        country: "NZ".into(),
        halls: (capacities.iter().enumerate())
            .map(|(i, capacity)| Hall {
                name: format!("Hall {i}"),
                location: String::new(),
                capacity: *capacity,
            })
            .collect(),
    })
}

/// The reference sends a location's id as the raw bytes of its ObjectId, which may hold a NUL.
pub const RAW_LOCATION_ID: &str = "\u{fffd}Y\0\u{fffd}\u{1}\\k";

pub fn cancelled(event_id: &str) -> DomainEvent {
    DomainEvent::EventCancelled(EventCancelled {
        id: event_id.into(),
    })
}

pub fn request(event_id: &str, seats: u32, user: &str) -> NewBooking {
    NewBooking {
        id: BookingId::generate(),
        event_id: event_id.into(),
        seats,
        date: Utc::now().timestamp(),
        customer: Customer {
            user_id: Some(user.into()),
            email: platform::Email::parse(&format!("{user}@example.com")).ok(),
        },
        idempotency: None,
    }
}

async fn setup(store: &dyn BookingStore, event_id: &str, capacity: u32) {
    let outcomes = store
        .apply(vec![(
            format!("created-{event_id}"),
            created(event_id, capacity).into(),
        )])
        .await
        .expect("apply eventCreated");
    assert_eq!(outcomes, [bus::Outcome::Applied]);
}

async fn apply_one(store: &dyn BookingStore, message_id: &str, event: DomainEvent) -> bus::Outcome {
    let mut outcomes = store
        .apply(vec![(message_id.into(), event.into())])
        .await
        .expect("apply");
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

async fn capacity(store: &dyn BookingStore, event_id: &str) -> Option<(u32, u32, SaleStatus)> {
    let a = store.availability(event_id).await.unwrap()?;
    Some((a.capacity, a.available, a.status))
}

async fn available(store: &dyn BookingStore, event_id: &str) -> u32 {
    store
        .availability(event_id)
        .await
        .unwrap()
        .expect("known event")
        .available
}

async fn outbox_count(store: &dyn BookingStore, name: &str) -> usize {
    let pending = store
        .outbox()
        .pending(0, 100_000)
        .await
        .expect("outbox readable");
    pending.iter().filter(|(_, e)| e.name == name).count()
}

fn booked(outcome: BookOutcome) -> Booking {
    match outcome {
        BookOutcome::Booked { booking } => booking,
        other => panic!("expected a booking, got {other:?}"),
    }
}

pub async fn seats_are_taken_and_refused_when_short(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    assert_eq!(
        store.book(request("e1", 1, "u")).await.unwrap().outcome,
        BookOutcome::UnknownEvent
    );
    setup(store, "e1", 10).await;
    let booking = booked(store.book(request("e1", 4, "u")).await.unwrap().outcome);
    assert_eq!(
        (booking.seats, booking.status, booking.event_name.as_str()),
        (4, BookingStatus::Active, "Show e1")
    );
    assert_eq!(available(store, "e1").await, 6);
    assert_eq!(
        store.book(request("e1", 7, "u")).await.unwrap().outcome,
        BookOutcome::NotEnoughSeats { available: 6 }
    );
    assert_eq!(
        store.booking(&booking.id).await.unwrap(),
        Some(booking.clone())
    );
    assert_eq!(outbox_count(store, "eventBooked").await, 1);
}

pub async fn an_idempotency_key_books_once(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    let mut first = request("e1", 2, "u");
    first.idempotency = Some(Idempotency {
        key: "k1".into(),
        fingerprint: "f".into(),
    });
    let original = store.book(first.clone()).await.unwrap();
    assert!(!original.replayed);
    let mut retry = first.clone();
    retry.id = "another-id".into();
    let replay = store.book(retry).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.outcome, original.outcome, "the first answer, again");
    assert_eq!(available(store, "e1").await, 8, "booked once");

    let mut different = request("e1", 3, "u");
    different.idempotency = Some(Idempotency {
        key: "k1".into(),
        fingerprint: "other".into(),
    });
    assert_eq!(
        store.book(different).await.unwrap().outcome,
        BookOutcome::KeyReused
    );
    assert_eq!(available(store, "e1").await, 8);
}

pub async fn a_cancelled_booking_returns_its_seats_once(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    let booking = booked(store.book(request("e1", 3, "u")).await.unwrap().outcome);
    let cancelled = store
        .cancel(&booking.id)
        .await
        .unwrap()
        .expect("known booking");
    assert_eq!(cancelled.status, BookingStatus::Cancelled);
    assert_eq!(available(store, "e1").await, 10);
    let again = store
        .cancel(&booking.id)
        .await
        .unwrap()
        .expect("known booking");
    assert_eq!(again.status, BookingStatus::Cancelled);
    assert_eq!(
        available(store, "e1").await,
        10,
        "seats returned exactly once"
    );
    assert_eq!(outbox_count(store, "bookingCancelled").await, 1);
    assert_eq!(store.cancel("nope").await.unwrap(), None);
}

pub async fn a_cancelled_event_cancels_its_bookings_and_takes_no_more(
    store: Arc<dyn BookingStore>,
) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    setup(store, "e2", 10).await;
    let a = booked(store.book(request("e1", 2, "u1")).await.unwrap().outcome);
    let b = booked(store.book(request("e1", 3, "u2")).await.unwrap().outcome);
    let gone = booked(store.book(request("e1", 1, "u3")).await.unwrap().outcome);
    store.cancel(&gone.id).await.unwrap();
    let other = booked(store.book(request("e2", 1, "u1")).await.unwrap().outcome);

    let outcome = store
        .apply(vec![("m-cancel".into(), cancelled("e1").into())])
        .await
        .unwrap();
    assert_eq!(outcome, [bus::Outcome::Applied]);
    for id in [&a.id, &b.id] {
        let status = store.booking(id).await.unwrap().unwrap().status;
        assert_eq!(status, BookingStatus::EventCancelled);
    }
    assert_eq!(
        store.booking(&gone.id).await.unwrap().unwrap().status,
        BookingStatus::Cancelled
    );
    assert_eq!(
        store.booking(&other.id).await.unwrap().unwrap().status,
        BookingStatus::Active
    );
    let availability = store.availability("e1").await.unwrap().unwrap();
    assert_eq!(
        (availability.available, availability.status),
        (10, SaleStatus::Cancelled)
    );
    assert_eq!(
        store.book(request("e1", 1, "u")).await.unwrap().outcome,
        BookOutcome::EventCancelled
    );
    // One for the customer's own cancellation, one per active booking of the event.
    assert_eq!(outbox_count(store, "bookingCancelled").await, 3);
}

/// The `bookingCancelled`s an `eventCancelled` causes carry the trace it was applied in, so that
/// a cancellation's trace reaches every customer's mail.
pub async fn a_cancellations_trace_reaches_the_bookings_it_releases(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    booked(store.book(request("e1", 2, "u1")).await.unwrap().outcome);
    booked(store.book(request("e1", 1, "u2")).await.unwrap().outcome);
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let delivered = crate::store::Delivered {
        event: cancelled("e1"),
        trace: Some(trace.into()),
    };
    let outcome = store.apply(vec![("m-cancel".into(), delivered)]).await;
    assert_eq!(outcome.unwrap(), [bus::Outcome::Applied]);
    let pending = store.outbox().pending(0, 100).await.unwrap();
    let released: Vec<&Envelope> = pending
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.name == "bookingCancelled")
        .collect();
    assert_eq!(released.len(), 2, "{pending:?}");
    for envelope in released {
        assert_eq!(envelope.trace.as_deref(), Some(trace), "{envelope:?}");
    }
}

/// The redelivery test: the same `eventCreated` / `eventCancelled` applied twice leaves the
/// state of once.
pub async fn redelivered_events_change_nothing(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    let booking = booked(store.book(request("e1", 4, "u")).await.unwrap().outcome);
    let again = store
        .apply(vec![("created-e1".into(), created("e1", 10).into())])
        .await
        .unwrap();
    assert_eq!(again, [bus::Outcome::Duplicate]);
    // The same fact under a new message id must not reset the inventory either.
    store
        .apply(vec![("other-id".into(), created("e1", 10).into())])
        .await
        .unwrap();
    assert_eq!(available(store, "e1").await, 6);

    store
        .apply(vec![("m-cancel".into(), cancelled("e1").into())])
        .await
        .unwrap();
    let once = (
        store.availability("e1").await.unwrap(),
        store.booking(&booking.id).await.unwrap(),
        outbox_count(store, "bookingCancelled").await,
    );
    let twice = store
        .apply(vec![("m-cancel".into(), cancelled("e1").into())])
        .await
        .unwrap();
    assert_eq!(twice, [bus::Outcome::Duplicate]);
    let after = (
        store.availability("e1").await.unwrap(),
        store.booking(&booking.id).await.unwrap(),
        outbox_count(store, "bookingCancelled").await,
    );
    assert_eq!(after, once);
    assert_eq!(once.2, 1);
}

/// An event cancelled before this service heard of it asks to be retried, and records nothing,
/// so it applies once its creation has arrived.
pub async fn a_cancellation_before_its_creation_is_retried(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    let outcomes = store
        .apply(vec![
            ("m-cancel".into(), cancelled("e9").into()),
            ("m-other".into(), created("e8", 5).into()),
        ])
        .await
        .unwrap();
    assert!(
        matches!(outcomes.as_slice(), [bus::Outcome::Retry(_)]),
        "{outcomes:?}"
    );
    assert!(
        store.availability("e8").await.unwrap().is_none(),
        "nothing after the retry was applied"
    );
    setup(store, "e9", 5).await;
    let outcomes = store
        .apply(vec![("m-cancel".into(), cancelled("e9").into())])
        .await
        .unwrap();
    assert_eq!(outcomes, [bus::Outcome::Applied]);
}

/// The reference's `eventCreated` (no hall, no capacity) after its `locationCreated`: on sale
/// with the seats of all the location's halls. Our own, which states its capacity, keeps it.
pub async fn the_references_event_has_the_seats_of_its_locations_halls(
    store: Arc<dyn BookingStore>,
) {
    let store = store.as_ref();
    let applied = bus::Outcome::Applied;
    assert_eq!(
        apply_one(store, "m-l1", location(RAW_LOCATION_ID, &[100, 20])).await,
        applied
    );
    assert_eq!(
        apply_one(store, "m-e1", reference_created("e1", RAW_LOCATION_ID)).await,
        applied
    );
    assert_eq!(
        capacity(store, "e1").await,
        Some((120, 120, SaleStatus::Active))
    );
    booked(store.book(request("e1", 4, "u")).await.unwrap().outcome);
    assert_eq!(available(store, "e1").await, 116);

    // Stated capacity wins over the location's halls (our events service).
    let mut ours = created("e2", 10);
    if let DomainEvent::EventCreated(e) = &mut ours {
        e.location_id = RAW_LOCATION_ID.into();
    }
    assert_eq!(apply_one(store, "m-e2", ours).await, applied);
    assert_eq!(
        capacity(store, "e2").await,
        Some((10, 10, SaleStatus::Active))
    );

    // Another location whose id differs only where the raw id is escaped.
    let near = RAW_LOCATION_ID.replace('\0', "\\0");
    assert_eq!(
        apply_one(store, "m-l2", location(&near, &[7])).await,
        applied
    );
    apply_one(store, "m-e3", reference_created("e3", &near)).await;
    assert_eq!(
        capacity(store, "e3").await,
        Some((7, 7, SaleStatus::Active))
    );

    // A location without seats can never sell the event: it is parked, not kept.
    assert_eq!(
        apply_one(store, "m-l3", location("empty", &[])).await,
        applied
    );
    let outcome = apply_one(store, "m-e4", reference_created("e4", "empty")).await;
    assert!(matches!(outcome, bus::Outcome::Poison(_)), "{outcome:?}");
    assert_eq!(capacity(store, "e4").await, None);
}

/// The reference's `eventCreated` before its `locationCreated` is applied (not retried, not
/// parked) and waits: not bookable, but cancellable; the location puts every event waiting
/// for it on sale, and later ones find it. Redeliveries change nothing; the first
/// `locationCreated` of a location wins.
pub async fn an_event_before_its_location_waits_for_it(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    let applied = bus::Outcome::Applied;
    assert_eq!(
        apply_one(store, "m-e1", reference_created("e1", "l1")).await,
        applied
    );
    assert_eq!(
        apply_one(store, "m-e2", reference_created("e2", "l1")).await,
        applied
    );
    assert_eq!(
        apply_one(store, "m-e9", reference_created("e9", "l9")).await,
        applied
    );
    assert_eq!(capacity(store, "e1").await, None, "not bookable yet");
    assert_eq!(
        store.book(request("e1", 1, "u")).await.unwrap().outcome,
        BookOutcome::UnknownEvent
    );
    assert_eq!(apply_one(store, "m-c2", cancelled("e2")).await, applied);
    // The same fact again under another message id, while it waits: still one event.
    assert_eq!(
        apply_one(store, "m-e1-again", reference_created("e1", "l1")).await,
        applied
    );

    assert_eq!(
        apply_one(store, "m-l1", location("l1", &[30])).await,
        applied
    );
    assert_eq!(
        capacity(store, "e1").await,
        Some((30, 30, SaleStatus::Active))
    );
    assert_eq!(
        capacity(store, "e2").await,
        Some((30, 30, SaleStatus::Cancelled))
    );
    assert_eq!(
        capacity(store, "e9").await,
        None,
        "another location's event still waits"
    );
    booked(store.book(request("e1", 3, "u")).await.unwrap().outcome);
    assert_eq!(
        store.book(request("e2", 1, "u")).await.unwrap().outcome,
        BookOutcome::EventCancelled
    );

    assert_eq!(
        apply_one(store, "m-l1", location("l1", &[30])).await,
        bus::Outcome::Duplicate
    );
    assert_eq!(
        apply_one(store, "m-l1-other", location("l1", &[500])).await,
        applied
    );
    assert_eq!(
        apply_one(store, "m-e3", reference_created("e3", "l1")).await,
        applied
    );
    assert_eq!(
        capacity(store, "e3").await,
        Some((30, 30, SaleStatus::Active))
    );
    assert_eq!(
        available(store, "e1").await,
        27,
        "the location changed nothing on sale"
    );
}

/// Events and their locations applied at the same time, as several consumers of one queue
/// would: every event ends on sale, none waits for a location that has come.
pub async fn events_and_their_locations_applied_at_once_meet(store: Arc<dyn BookingStore>) {
    events_and_their_locations_meet_between(store.clone(), store).await;
}

/// The same, with the events applied through `one` and their locations through `other`, two
/// stores of the same database (as two processes would have): for the stores whose
/// transactions take turns within one store value (MongoDB), only this shows that concurrent
/// transactions meet.
pub async fn events_and_their_locations_meet_between(
    one: Arc<dyn BookingStore>,
    other: Arc<dyn BookingStore>,
) {
    let store = one.clone();
    let mut tasks = Vec::new();
    for i in 0..12 {
        for (message, event) in [
            (
                format!("m-e{i}"),
                reference_created(&format!("e{i}"), &format!("l{i}")),
            ),
            (format!("m-l{i}"), location(&format!("l{i}"), &[5])),
        ] {
            let store = match &event {
                DomainEvent::LocationCreated(_) => other.clone(),
                _ => one.clone(),
            };
            tasks.push(tokio::spawn(async move {
                store.apply(vec![(message, event.into())]).await
            }));
        }
    }
    for task in tasks {
        let outcomes = task.await.expect("task").expect("applied");
        assert_eq!(outcomes, [bus::Outcome::Applied]);
    }
    for i in 0..12 {
        assert_eq!(
            capacity(store.as_ref(), &format!("e{i}")).await,
            Some((5, 5, SaleStatus::Active)),
            "e{i}"
        );
    }
}

pub async fn listing_filters_by_user_and_event(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup(store, "e1", 10).await;
    setup(store, "e2", 10).await;
    booked(store.book(request("e1", 1, "ann")).await.unwrap().outcome);
    booked(store.book(request("e2", 1, "ann")).await.unwrap().outcome);
    booked(store.book(request("e1", 1, "bob")).await.unwrap().outcome);
    let list = |user: Option<&str>, event: Option<&str>| BookingFilter {
        user_id: user.map(UserId::from),
        event_id: event.map(EventId::from),
    };
    assert_eq!(store.bookings(list(None, None)).await.unwrap().len(), 3);
    assert_eq!(
        store.bookings(list(Some("ann"), None)).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.bookings(list(None, Some("e1"))).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .bookings(list(Some("bob"), Some("e2")))
            .await
            .unwrap()
            .len(),
        0
    );
}

/// The oversell test: 200 concurrent clients want 1–4 seats each of 100. Every client that is
/// refused while seats remain asks again for what is left, so the sale must end at exactly 100
/// confirmed seats — never more (oversold), never fewer (seats lost).
pub async fn concurrent_clients_never_oversell(store: Arc<dyn BookingStore>) {
    setup(store.as_ref(), "flash", 100).await;
    let mut clients = Vec::new();
    for i in 0..200u32 {
        let store = store.clone();
        clients.push(tokio::spawn(async move {
            let mut want = 1 + i % 4;
            loop {
                match store
                    .book(request("flash", want, &format!("c{i}")))
                    .await
                    .unwrap()
                    .outcome
                {
                    BookOutcome::Booked { booking } => return booking.seats,
                    BookOutcome::NotEnoughSeats { available: 0 } => return 0,
                    BookOutcome::NotEnoughSeats { available } => want = want.min(available),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    let mut confirmed = 0;
    for client in clients {
        confirmed += client.await.expect("client task");
    }
    assert_eq!(confirmed, 100, "confirmed seats add up to the capacity");
    assert_eq!(available(store.as_ref(), "flash").await, 0);
    let active: u32 = store
        .bookings(BookingFilter {
            user_id: None,
            event_id: Some("flash".into()),
        })
        .await
        .unwrap()
        .iter()
        .filter(|b| b.status == BookingStatus::Active)
        .map(|b| b.seats)
        .sum();
    assert_eq!(
        active, 100,
        "capacity = available + seats of active bookings"
    );
}

/// Retries of one request with one idempotency key, all at once, book once and all get the
/// same answer.
pub async fn concurrent_retries_with_one_key_book_once(store: Arc<dyn BookingStore>) {
    setup(store.as_ref(), "e1", 100).await;
    let mut first = request("e1", 2, "u");
    first.idempotency = Some(Idempotency {
        key: "k1".into(),
        fingerprint: "f".into(),
    });
    let mut retries = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        let mut retry = first.clone();
        retry.id = BookingId::generate();
        retries.push(tokio::spawn(async move { store.book(retry).await }));
    }
    let mut answers = Vec::new();
    for retry in retries {
        let answer = retry.await.expect("client task").expect("an answer");
        answers.push(booked(answer.outcome));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(available(store.as_ref(), "e1").await, 98, "booked once");
    assert_eq!(outbox_count(store.as_ref(), "eventBooked").await, 1);
}

/// `myevents replay` writes a rebuilt state into an empty store: inventory, bookings, the inbox
/// (so a redelivery afterwards changes nothing) and the events still to publish.
/// Only for the stores that `myevents replay` can rebuild ([`Restore`]): not in
/// [`conformance_tests!`].
pub async fn a_rebuilt_state_is_restored_into_an_empty_store(store: impl Restore) {
    let store = &store;
    let rebuilt = Rebuilt {
        inventory: vec![RebuiltEvent {
            event_id: "e1".into(),
            name: "Show e1".into(),
            capacity: 10,
            available: 7,
            cancelled: false,
            per_customer: Some(4),
        }],
        bookings: vec![RebuiltBooking {
            id: "b1".into(),
            event_id: "e1".into(),
            seats: 3,
            date: 1_800_000_000,
            status: BookingStatus::Active,
            user_id: Some("u".into()),
            email: "u@example.com".into(),
        }],
        locations: vec![RebuiltLocation {
            key: "l1".into(),
            halls: vec![Hall {
                name: "Main".into(),
                location: String::new(),
                capacity: 40,
            }],
        }],
        waiting: vec![WaitingEvent {
            event: match reference_created("w1", "l2") {
                DomainEvent::EventCreated(e) => e,
                _ => unreachable!(),
            },
            cancelled: true,
        }],
        holdings: vec![("e1".into(), "email:u@example.com".into(), 3)],
        message_ids: vec!["created-e1".into()],
        owed: vec![cancelled("e0")],
        ignored: Vec::new(),
    };
    let unpublished = Envelope::new(&created("e2", 5), None);
    store
        .restore(rebuilt.clone(), vec![unpublished.clone()])
        .await
        .expect("restore into an empty store");

    assert_eq!(available(store, "e1").await, 7);
    // What the customer holds of the event came back with its limit.
    assert_eq!(
        store.book(request("e1", 2, "u")).await.unwrap().outcome,
        BookOutcome::OverLimit { limit: 4, held: 3 }
    );
    let booking = store
        .booking("b1")
        .await
        .unwrap()
        .expect("restored booking");
    assert_eq!(
        (booking.event_name.as_str(), booking.seats, booking.status),
        ("Show e1", 3, BookingStatus::Active)
    );
    let again = store
        .apply(vec![("created-e1".into(), created("e1", 10).into())])
        .await
        .unwrap();
    assert_eq!(again, [bus::Outcome::Duplicate]);
    let pending = store.outbox().pending(0, 100).await.unwrap();
    let names: Vec<_> = pending.iter().map(|(_, e)| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["eventCreated", "eventCancelled"],
        "carried over, then owed"
    );
    // The locations and the events waiting for theirs are restored too.
    apply_one(store, "m-r1", reference_created("r1", "l1")).await;
    assert_eq!(
        capacity(store, "r1").await,
        Some((40, 40, SaleStatus::Active))
    );
    assert_eq!(capacity(store, "w1").await, None);
    apply_one(store, "m-l2", location("l2", &[9])).await;
    assert_eq!(
        capacity(store, "w1").await,
        Some((9, 9, SaleStatus::Cancelled))
    );
    // PostgreSQL keeps times to the microsecond, so the carried event is compared by identity.
    assert_eq!(
        (&pending[0].1.id, &pending[0].1.payload),
        (&unpublished.id, &unpublished.payload)
    );

    assert!(
        store.restore(rebuilt, Vec::new()).await.is_err(),
        "a store that holds bookings is not overwritten"
    );
}

/// Customers cancel their bookings while the event itself is cancelled: every booking ends
/// cancelled exactly once (one `bookingCancelled` each, all seats back), and no request fails.
pub async fn customers_cancel_while_the_event_is_cancelled(store: Arc<dyn BookingStore>) {
    setup(store.as_ref(), "e1", 100).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let booking = booked(
            store
                .book(request("e1", 2, &format!("c{i}")))
                .await
                .unwrap()
                .outcome,
        );
        ids.push(booking.id);
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i == ids.len() / 2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .apply(vec![("m-cancel".into(), cancelled("e1").into())])
                    .await
                    .map(|_| ())
            }));
        }
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(
            async move { store.cancel(&id).await.map(|_| ()) },
        ));
    }
    for task in tasks {
        task.await.expect("task").expect("no request fails");
    }
    for id in &ids {
        let status = store.booking(id).await.unwrap().expect("known").status;
        assert_ne!(status, BookingStatus::Active, "{id}");
    }
    assert_eq!(available(store.as_ref(), "e1").await, 100);
    assert_eq!(
        outbox_count(store.as_ref(), "bookingCancelled").await,
        ids.len()
    );
}

/// For the stores that book a queue of requests in one transaction (SQLite, PostgreSQL): a
/// request that fails in the database (here, a booking id already taken) fails alone, and the
/// requests queued with it are booked. Not in [`conformance_tests!`]: the other stores book
/// each request on its own, and their ids are never reused.
pub async fn a_failing_booking_fails_alone_among_those_queued_with_it(
    store: Arc<dyn BookingStore>,
) {
    setup(store.as_ref(), "queue", 100).await;
    let first = request("queue", 1, "first");
    let taken_id = first.id.clone();
    booked(store.book(first).await.unwrap().outcome);
    let mut clients = Vec::new();
    for i in 0..40u32 {
        let store = store.clone();
        let mut request = request("queue", 1, &format!("c{i}"));
        if i == 20 {
            request.id = taken_id.clone();
        }
        clients.push(tokio::spawn(async move { store.book(request).await }));
    }
    let mut confirmed = 0;
    let mut failed = 0;
    for client in clients {
        match client.await.expect("client task") {
            Ok(result) => confirmed += booked(result.outcome).seats,
            Err(_) => failed += 1,
        }
    }
    assert_eq!((confirmed, failed), (39, 1));
    assert_eq!(available(store.as_ref(), "queue").await, 100 - 1 - 39);
}

/// For the stores that book a queue of requests in one transaction (SQLite, PostgreSQL): 100
/// bookings requested at once are committed in fewer transactions than there are bookings,
/// which is the point of the queue (a flash sale pays one commit, and one fsync, per batch).
/// `commits` counts the transactions of the store's database that wrote bookings so far, as
/// the database itself records them (a store that books each request in its own transaction
/// fails here). Not in [`conformance_tests!`]: the other stores book each request alone.
pub async fn concurrent_bookings_share_commits<F, Fut>(store: Arc<dyn BookingStore>, commits: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    const BOOKINGS: u64 = 100;
    setup(store.as_ref(), "rush", BOOKINGS as u32).await;
    let before = commits().await;
    let clients: Vec<_> = (0..BOOKINGS)
        .map(|i| {
            let store = store.clone();
            let request = request("rush", 1, &format!("r{i}"));
            tokio::spawn(async move { store.book(request).await })
        })
        .collect();
    for client in clients {
        booked(client.await.expect("client task").expect("booked").outcome);
    }
    assert_eq!(available(store.as_ref(), "rush").await, 0);
    let used = commits().await - before;
    assert!(
        (1..BOOKINGS).contains(&used),
        "{BOOKINGS} bookings requested at once were committed in {used} transactions"
    );
}

/// Every check of this suite as a `#[tokio::test]` of the calling test file, each on the store
/// that `$fresh().await` returns beside a guard that keeps its database alive (a temporary
/// folder, a test database). One list for every backend's test file, so a check added to the
/// suite runs on each of them.
/// A location whose `locationCreated` comes after many of its events puts them all on sale
/// (more than one DynamoDB transaction holds).
pub async fn a_location_puts_many_waiting_events_on_sale(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    let ids: Vec<String> = (0..40).map(|i| format!("w{i:02}")).collect();
    for id in &ids {
        let outcome = apply_one(
            store,
            &format!("created-{id}"),
            reference_created(id, "crowded"),
        )
        .await;
        assert_eq!(outcome, bus::Outcome::Applied);
    }
    let outcome = apply_one(store, "location-crowded", location("crowded", &[25])).await;
    assert_eq!(outcome, bus::Outcome::Applied);
    for id in &ids {
        assert_eq!(
            capacity(store, id).await,
            Some((25, 25, SaleStatus::Active)),
            "{id}"
        );
    }
}

/// An event with a limit of seats per customer.
async fn setup_limited(store: &dyn BookingStore, event_id: &str, capacity: u32, limit: u32) {
    let DomainEvent::EventCreated(mut event) = created(event_id, capacity) else {
        unreachable!()
    };
    event.seats_per_customer = Some(limit);
    let event = DomainEvent::EventCreated(event);
    let outcome = apply_one(store, &format!("created-{event_id}"), event).await;
    assert_eq!(outcome, bus::Outcome::Applied);
}

fn guest(event_id: &str, seats: u32, email: &str) -> NewBooking {
    let mut guest = request(event_id, seats, "nobody");
    guest.customer = Customer {
        user_id: None,
        email: platform::Email::parse(email).ok(),
    };
    guest
}

/// An event's limit of seats per customer counts a customer's active bookings (a signed-in
/// user and a guest with the same address are one customer), gives seats back when one is
/// cancelled, and refuses a guest who gave no address to count by.
pub async fn a_customer_holds_no_more_than_the_events_limit(store: Arc<dyn BookingStore>) {
    let store = store.as_ref();
    setup_limited(store, "e1", 100, 4).await;
    let first = booked(store.book(request("e1", 3, "u")).await.unwrap().outcome);
    assert_eq!(
        store.book(request("e1", 2, "u")).await.unwrap().outcome,
        BookOutcome::OverLimit { limit: 4, held: 3 }
    );
    // The same address as a guest is the same customer.
    assert_eq!(
        store
            .book(guest("e1", 2, "u@example.com"))
            .await
            .unwrap()
            .outcome,
        BookOutcome::OverLimit { limit: 4, held: 3 }
    );
    booked(
        store
            .book(guest("e1", 1, "u@example.com"))
            .await
            .unwrap()
            .outcome,
    );
    // Someone else is not held back, and a guest with no address cannot be counted.
    booked(store.book(request("e1", 4, "v")).await.unwrap().outcome);
    assert_eq!(
        store.book(guest("e1", 1, "")).await.unwrap().outcome,
        BookOutcome::CustomerRequired
    );
    // A cancellation gives the customer's seats back.
    store.cancel(&first.id).await.unwrap();
    booked(store.book(request("e1", 3, "u")).await.unwrap().outcome);
    assert_eq!(
        store.book(request("e1", 1, "u")).await.unwrap().outcome,
        BookOutcome::OverLimit { limit: 4, held: 4 }
    );
    assert_eq!(available(store, "e1").await, 100 - 8);
    // Without a limit nobody is counted.
    setup(store, "e2", 100).await;
    booked(store.book(request("e2", 50, "u")).await.unwrap().outcome);
    booked(store.book(guest("e2", 50, "")).await.unwrap().outcome);
}

/// Many bookings of one customer at once never take them past the limit: the limit is kept
/// in the same atomic step as the seats.
pub async fn concurrent_bookings_of_one_customer_stay_within_the_limit(
    store: Arc<dyn BookingStore>,
) {
    setup_limited(store.as_ref(), "e1", 1000, 5).await;
    let mut clients = Vec::new();
    for i in 0..20u32 {
        let store = store.clone();
        clients.push(tokio::spawn(async move {
            // Half as the user, half as a guest with the user's address.
            let request = match i % 2 {
                0 => request("e1", 1 + i % 3, "u"),
                _ => guest("e1", 1 + i % 3, "u@example.com"),
            };
            match store.book(request).await.unwrap().outcome {
                BookOutcome::Booked { booking } => booking.seats,
                BookOutcome::OverLimit { limit: 5, .. } => 0,
                other => panic!("unexpected {other:?}"),
            }
        }));
    }
    let mut taken = 0;
    for client in clients {
        taken += client.await.expect("client task");
    }
    // Seven requests are for one seat, and each is taken while the customer holds fewer than 5,
    // so they end holding exactly 5.
    assert_eq!(taken, 5, "one customer took {taken} seats of a limit of 5");
    assert_eq!(available(store.as_ref(), "e1").await, 1000 - taken);
}

#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!($fresh; seats_are_taken_and_refused_when_short, an_idempotency_key_books_once, a_cancelled_booking_returns_its_seats_once, a_cancelled_event_cancels_its_bookings_and_takes_no_more, a_cancellations_trace_reaches_the_bookings_it_releases, redelivered_events_change_nothing, a_cancellation_before_its_creation_is_retried, listing_filters_by_user_and_event, concurrent_clients_never_oversell, concurrent_retries_with_one_key_book_once, customers_cancel_while_the_event_is_cancelled, the_references_event_has_the_seats_of_its_locations_halls, an_event_before_its_location_waits_for_it, events_and_their_locations_applied_at_once_meet, a_customer_holds_no_more_than_the_events_limit, concurrent_bookings_of_one_customer_stay_within_the_limit, a_location_puts_many_waiting_events_on_sale);
    };
    ($fresh:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store): (_, std::sync::Arc<dyn $crate::BookingStore>) = $fresh().await;
            $crate::conformance::$name(store).await;
        }
    )*};
}
