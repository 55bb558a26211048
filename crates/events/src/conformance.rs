//! What every [`EventStore`] backend must do, as one suite each backend's tests run against a
//! real server of its kind (SQLite: a real file). Each function takes a fresh, empty store.

use std::sync::Arc;

use chrono::Utc;
use contracts::{BookingCancelled, CancelReason, DomainEvent, EventBooked};

use crate::domain::{Event, EventStatus, Hall, Location};
use crate::store::{EventStore, Page};

pub fn location(id: &str) -> Location {
    Location {
        id: id.into(),
        name: format!("Hall of {id}"),
        address: "1 Main St".into(),
        country: "NZ".into(),
        open_time: 8,
        close_time: 23,
        halls: vec![Hall {
            name: "Main".into(),
            location: "ground".into(),
            capacity: 100,
        }],
    }
}

pub fn event(id: &str, location: Location) -> Event {
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
        seats_per_customer: None,
    }
}

async fn outbox_names(store: &dyn EventStore) -> Vec<String> {
    let pending = store
        .outbox()
        .pending(0, 1000)
        .await
        .expect("outbox readable");
    pending.into_iter().map(|(_, e)| e.name).collect()
}

pub async fn locations_and_events_round_trip(store: Arc<dyn EventStore>) {
    let loc = location("l1");
    store.create_location(loc.clone()).await.unwrap();
    assert_eq!(store.location("l1").await.unwrap(), Some(loc.clone()));
    assert_eq!(store.location("nope").await.unwrap(), None);
    assert_eq!(store.locations().await.unwrap(), vec![loc.clone()]);

    for id in ["e1", "e2", "e3"] {
        store
            .create_event(event(id, loc.clone()), false)
            .await
            .unwrap();
    }
    assert_eq!(
        store.event("e2").await.unwrap(),
        Some(event("e2", loc.clone()))
    );
    assert_eq!(
        store.event_by_name("Show e3").await.unwrap().map(|e| e.id),
        Some("e3".into())
    );
    assert_eq!(store.event("nope").await.unwrap(), None);

    let all = store.events(Page::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e2", "e3"]
    );
    let page = store
        .events(Page {
            limit: Some(1),
            after: Some("e1".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e2"]
    );

    assert_eq!(
        outbox_names(store.as_ref()).await,
        [
            "locationCreated",
            "eventCreated",
            "eventCreated",
            "eventCreated"
        ]
    );
}

/// The `seats_per_customer` of each `eventCreated` in the outbox, by event id.
async fn created_limits(store: &dyn EventStore) -> Vec<(String, Option<u32>)> {
    let pending = store
        .outbox()
        .pending(0, 1000)
        .await
        .expect("outbox readable");
    pending
        .into_iter()
        .filter_map(|(_, e)| match e.decode() {
            Ok(DomainEvent::EventCreated(c)) => Some((c.id, c.seats_per_customer)),
            _ => None,
        })
        .collect()
}

pub async fn an_event_keeps_its_limit_of_seats_per_customer(store: Arc<dyn EventStore>) {
    let loc = location("l1");
    store.create_location(loc.clone()).await.unwrap();
    let limited = Event {
        seats_per_customer: Some(4),
        ..event("limited", loc.clone())
    };
    let free = event("free", loc.clone());
    store.create_event(limited.clone(), false).await.unwrap();
    store.create_event(free.clone(), false).await.unwrap();

    assert_eq!(store.event("limited").await.unwrap(), Some(limited.clone()));
    assert_eq!(store.event("free").await.unwrap(), Some(free.clone()));
    assert_eq!(
        store.event_by_name("Show limited").await.unwrap(),
        Some(limited.clone())
    );
    assert_eq!(
        store.events(Page::default()).await.unwrap(),
        vec![limited.clone(), free.clone()]
    );
    // Cancelling keeps the limit.
    let cancelled = store.cancel_event("limited").await.unwrap().expect("known");
    assert_eq!(cancelled.seats_per_customer, Some(4));

    assert_eq!(
        created_limits(store.as_ref()).await,
        [("limited".to_owned(), Some(4)), ("free".to_owned(), None)]
    );
}

pub async fn an_event_may_bring_its_own_location(store: Arc<dyn EventStore>) {
    store
        .create_event(event("e1", location("new")), true)
        .await
        .unwrap();
    assert!(store.location("new").await.unwrap().is_some());
    assert_eq!(
        outbox_names(store.as_ref()).await,
        ["locationCreated", "eventCreated"]
    );
}

pub async fn cancelling_emits_event_cancelled_once(store: Arc<dyn EventStore>) {
    store
        .create_event(event("e1", location("l")), true)
        .await
        .unwrap();
    let cancelled = store
        .cancel_event("e1")
        .await
        .unwrap()
        .expect("known event");
    assert_eq!(cancelled.status, EventStatus::Cancelled);
    let again = store
        .cancel_event("e1")
        .await
        .unwrap()
        .expect("still known");
    assert_eq!(again.status, EventStatus::Cancelled);
    assert_eq!(store.cancel_event("nope").await.unwrap(), None);
    let names = outbox_names(store.as_ref()).await;
    assert_eq!(
        names.iter().filter(|n| *n == "eventCancelled").count(),
        1,
        "{names:?}"
    );
}

pub async fn redelivered_booking_events_count_once(store: Arc<dyn EventStore>) {
    store
        .create_event(event("e1", location("l")), true)
        .await
        .unwrap();
    let booked = |id: &str, seats| {
        DomainEvent::EventBooked(EventBooked {
            event_id: "e1".into(),
            user_id: String::new(),
            booking_id: id.into(),
            seats,
            email: "g@example.com".into(),
            booked_at: Utc::now(),
        })
    };
    let cancelled = DomainEvent::BookingCancelled(BookingCancelled {
        booking_id: "b1".into(),
        event_id: "e1".into(),
        seats: 3,
        reason: CancelReason::Customer,
    });
    let batch = vec![
        ("m1".to_owned(), booked("b1", 3)),
        ("m2".to_owned(), booked("b2", 2)),
        ("m3".to_owned(), cancelled),
    ];
    let first = store.apply(batch.clone()).await.unwrap();
    assert_eq!(first, vec![bus::Outcome::Applied; 3]);
    let once = store.sales("e1").await.unwrap().expect("figures");
    assert_eq!(
        (once.seats_sold, once.bookings, once.cancellations),
        (2, 2, 1)
    );

    let second = store.apply(batch).await.unwrap();
    assert_eq!(second, vec![bus::Outcome::Duplicate; 3]);
    assert_eq!(store.sales("e1").await.unwrap(), Some(once.clone()));
    assert_eq!(store.all_sales().await.unwrap(), vec![once]);
}

/// Every check of this suite as a `#[tokio::test]` of the calling test file, each on the store
/// that `$fresh().await` returns beside a guard that keeps its database alive (a temporary
/// folder, a test database). One list for every backend's test file, so a check added to the
/// suite runs on each of them.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!($fresh; locations_and_events_round_trip, an_event_may_bring_its_own_location, cancelling_emits_event_cancelled_once, redelivered_booking_events_count_once, an_event_keeps_its_limit_of_seats_per_customer);
    };
    ($fresh:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store): (_, std::sync::Arc<dyn $crate::EventStore>) = $fresh().await;
            $crate::conformance::$name(store).await;
        }
    )*};
}
