//! What every [`NotificationStore`] backend must do. Each function takes a fresh, empty store.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use contracts::{
    BookingCancelled, CancelReason, DomainEvent, EventBooked, EventCreated, UserCreated,
};

use crate::domain::{BookingLinks, Mail};
use crate::store::{Delivered, MailQueue, MailStatus, NotificationStore, Received};

pub fn created(id: &str) -> DomainEvent {
    DomainEvent::EventCreated(EventCreated {
        id: id.into(),
        name: format!("Show {id}"),
        location_id: "l1".into(),
        start_date: DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default(),
        end_date: DateTime::from_timestamp(1_900_007_200, 0).unwrap_or_default(),
        hall: "Main".into(),
        capacity: Some(10),
        seats_per_customer: None,
    })
}

pub fn booked(event: &str, booking: &str, email: &str) -> DomainEvent {
    DomainEvent::EventBooked(EventBooked {
        event_id: event.into(),
        user_id: String::new(),
        booking_id: booking.into(),
        seats: 2,
        email: email.into(),
        booked_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
    })
}

pub fn cancelled(event: &str, booking: &str, reason: CancelReason) -> DomainEvent {
    DomainEvent::BookingCancelled(BookingCancelled {
        booking_id: booking.into(),
        event_id: event.into(),
        seats: 2,
        reason,
    })
}

pub fn welcome(user: &str) -> DomainEvent {
    DomainEvent::UserCreated(UserCreated {
        id: user.into(),
        email: format!("{user}@example.com"),
        name: "Ann".into(),
    })
}

/// `events` as delivered now, without a trace.
fn batch(events: &[(&str, DomainEvent)]) -> Vec<Delivered> {
    events
        .iter()
        .map(|(id, e)| ((*id).to_owned(), received(e.clone(), Utc::now(), None)))
        .collect()
}

fn received(event: DomainEvent, at: DateTime<Utc>, trace: Option<&str>) -> Received {
    Received {
        event,
        at,
        trace: trace.map(str::to_owned),
    }
}

async fn mail_ids(store: &Arc<dyn NotificationStore>) -> Vec<String> {
    let mut ids: Vec<String> = store
        .mails()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.mail.id)
        .collect();
    ids.sort();
    ids
}

/// Each fact queues its mail, addressed to the customer of the booking, and the same facts
/// delivered again — with the same message ids, or republished under new ones — queue nothing.
pub async fn every_fact_queues_one_mail_and_redelivery_none(store: Arc<dyn NotificationStore>) {
    let history = [
        ("m1", created("e1")),
        ("m2", booked("e1", "b1", "ann@example.com")),
        ("m3", cancelled("e1", "b1", CancelReason::Customer)),
        ("m4", booked("e1", "b2", "bob@example.com")),
        ("m5", cancelled("e1", "b2", CancelReason::EventCancelled)),
        ("m6", welcome("u1")),
    ];
    let outcomes = store
        .apply(batch(&history), &BookingLinks::none())
        .await
        .unwrap();
    assert_eq!(outcomes, vec![bus::Outcome::Applied; 6]);
    let expected = [
        "booked-b1",
        "booked-b2",
        "cancelled-b1",
        "cancelled-b2",
        "welcome-u1",
    ];
    assert_eq!(mail_ids(&store).await, expected);
    let mails = store.mails().await.unwrap();
    let bob = mails.iter().find(|m| m.mail.id == "cancelled-b2").unwrap();
    assert_eq!(bob.mail.to, "bob@example.com");
    assert!(
        bob.mail.subject.starts_with("Event cancelled"),
        "{:?}",
        bob.mail
    );
    assert!(bob.mail.text.contains("Show e1"), "{:?}", bob.mail);

    let again = store
        .apply(batch(&history), &BookingLinks::none())
        .await
        .unwrap();
    assert_eq!(again, vec![bus::Outcome::Duplicate; 6]);
    let republished: Vec<(&str, DomainEvent)> = history
        .iter()
        .map(|(id, e)| (if *id == "m2" { "m2-again" } else { *id }, e.clone()))
        .collect();
    store
        .apply(batch(&republished), &BookingLinks::none())
        .await
        .unwrap();
    assert_eq!(mail_ids(&store).await, expected, "still one mail per fact");
}

/// A guest's confirmation carries the link that manages the booking, made by the links the
/// store is given; a guest who gave no address gets no mail, and nor does its cancellation.
pub async fn a_guests_mail_carries_its_link_and_no_address_means_no_mail(
    store: Arc<dyn NotificationStore>,
) {
    let links = BookingLinks::new(
        platform::LinkSigner::new(b"0123456789abcdef", None),
        "https://tickets.example".into(),
    );
    let outcomes = store
        .apply(
            batch(&[
                ("m1", created("e1")),
                ("m2", booked("e1", "b1", "ann@example.com")),
                ("m3", booked("e1", "b2", "")),
                ("m4", cancelled("e1", "b2", CancelReason::Customer)),
            ]),
            &links,
        )
        .await
        .unwrap();
    assert_eq!(outcomes, vec![bus::Outcome::Applied; 4]);
    let mails = store.mails().await.unwrap();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].mail.id, "booked-b1");
    assert!(
        mails[0]
            .mail
            .text
            .contains("https://tickets.example/#/bookings/b1?token="),
        "{}",
        mails[0].mail.text
    );
}

/// A booking whose event is not known yet asks to be retried and queues nothing.
pub async fn a_booking_before_its_event_is_retried(store: Arc<dyn NotificationStore>) {
    let outcomes = store
        .apply(
            batch(&[("m1", booked("e9", "b9", "a@example.com"))]),
            &BookingLinks::none(),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcomes[..], [bus::Outcome::Retry(_)]),
        "{outcomes:?}"
    );
    assert!(store.mails().await.unwrap().is_empty());
    let outcomes = store
        .apply(
            batch(&[
                ("m0", created("e9")),
                ("m1", booked("e9", "b9", "a@example.com")),
            ]),
            &BookingLinks::none(),
        )
        .await
        .unwrap();
    assert_eq!(outcomes, vec![bus::Outcome::Applied; 2]);
    assert_eq!(mail_ids(&store).await, ["booked-b9"]);
}

/// How long the tests' claims last: longer than any of them takes.
const LEASE: std::time::Duration = std::time::Duration::from_secs(600);

/// Replicas' senders share one queue: a mail one of them claimed is due for no other until its
/// claim runs out (its sender died without recording it), and two senders claiming at once
/// take different mails.
pub async fn a_claimed_mail_is_due_for_no_other_sender_until_its_claim_runs_out(
    store: Arc<dyn NotificationStore>,
) {
    let users: Vec<String> = (0..40).map(|n| format!("u{n}")).collect();
    let facts: Vec<(String, DomainEvent)> = users
        .iter()
        .map(|u| (format!("m-{u}"), welcome(u)))
        .collect();
    let facts: Vec<(&str, DomainEvent)> =
        facts.iter().map(|(m, f)| (m.as_str(), f.clone())).collect();
    store
        .apply(batch(&facts), &BookingLinks::none())
        .await
        .unwrap();
    let short = std::time::Duration::from_millis(1500);
    let (one, other) = tokio::join!(store.claim(25, short), store.claim(25, short));
    let (one, other) = (one.unwrap(), other.unwrap());
    let mut ids: Vec<String> = one.iter().chain(&other).map(|m| m.id.clone()).collect();
    ids.sort();
    let claimed = ids.len();
    ids.dedup();
    assert_eq!(
        ids.len(),
        claimed,
        "a mail claimed by both senders: {ids:?}"
    );
    // What one sender left, the next claim takes; then nothing is due.
    let rest = store.claim(100, short).await.unwrap();
    assert_eq!(claimed + rest.len(), 40, "every mail claimed once");
    assert!(store.claim(100, short).await.unwrap().is_empty());
    // One sender records its mails; the other dies: its mails come due again.
    store
        .mark_sent(one.iter().chain(&rest).map(|m| m.id.clone()).collect())
        .await
        .unwrap();
    tokio::time::sleep(short + std::time::Duration::from_millis(200)).await;
    let mut again: Vec<String> = store
        .claim(100, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    again.sort();
    let mut lost: Vec<String> = other.iter().map(|m| m.id.clone()).collect();
    lost.sort();
    assert_eq!(again, lost);
}

/// A mail is due until sent; a failed attempt makes it wait, and a permanent refusal ends it.
pub async fn mails_are_due_until_sent_and_given_up_when_refused_for_good(
    store: Arc<dyn NotificationStore>,
) {
    store
        .apply(
            batch(&[("m1", welcome("u1")), ("m2", welcome("u2"))]),
            &BookingLinks::none(),
        )
        .await
        .unwrap();
    let due: Vec<String> = store
        .claim(10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(due, ["welcome-u1", "welcome-u2"]);
    store.mark_sent(vec!["welcome-u1".into()]).await.unwrap();
    store
        .mark_failed("welcome-u2", "connection refused", false)
        .await
        .unwrap();
    assert!(
        store.claim(10, LEASE).await.unwrap().is_empty(),
        "one sent, one waiting to retry"
    );
    store
        .mark_failed("welcome-u2", "550 no such user", true)
        .await
        .unwrap();
    let statuses: Vec<(String, MailStatus, u32)> = store
        .mails()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.mail.id, m.status, m.attempts))
        .collect();
    assert_eq!(
        statuses,
        [
            ("welcome-u1".to_owned(), MailStatus::Sent, 1),
            ("welcome-u2".to_owned(), MailStatus::Failed, 2)
        ]
    );
}

/// The operator's gauges: how many mails wait, and since when the first of them is due. The
/// first due is the first-queued mail's on DynamoDB (see its store), so this check fails the
/// second-queued mail, where every backend agrees.
pub async fn the_mail_queue_counts_what_waits_and_when_it_is_due(
    store: Arc<dyn NotificationStore>,
) {
    assert_eq!(store.mail_queue().await.unwrap(), MailQueue::default());
    // Milliseconds: what every store keeps of a due time.
    let before = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    for id in ["first", "second"] {
        let mail = Mail::direct(id.into(), "ann@example.com".into(), "hello");
        store.queue(mail).await.unwrap();
    }
    let queue = store.mail_queue().await.unwrap();
    assert_eq!(queue.depth, 2);
    let first_due = queue.first_due.expect("a mail is due");
    assert!(first_due >= before && first_due <= Utc::now(), "{queue:?}");

    store
        .mark_failed("second", "connection refused", false)
        .await
        .unwrap();
    assert_eq!(
        store.mail_queue().await.unwrap(),
        MailQueue {
            depth: 2,
            first_due: Some(first_due)
        },
        "the first is still due first"
    );
    store.mark_sent(vec!["first".into()]).await.unwrap();
    let queue = store.mail_queue().await.unwrap();
    assert_eq!(queue.depth, 1);
    assert!(
        queue.first_due.is_some_and(|t| t > first_due),
        "the second is due at its next attempt: {queue:?}"
    );
    store
        .mark_failed("second", "550 no such user", true)
        .await
        .unwrap();
    assert_eq!(
        store.mail_queue().await.unwrap(),
        MailQueue::default(),
        "a mail refused for good waits no more"
    );
}

/// Facts from before the store was first opened (a service added to a running system) are
/// learnt but not mailed; what happens to them from then on is.
pub async fn facts_from_before_the_first_start_are_learnt_not_mailed(
    store: Arc<dyn NotificationStore>,
) {
    let last_week = Utc::now() - Duration::days(7);
    let old: Vec<Delivered> = [
        ("m1", created("e1")),
        ("m2", booked("e1", "b1", "ann@example.com")),
        ("m3", welcome("u1")),
    ]
    .into_iter()
    .map(|(id, e)| (id.to_owned(), received(e, last_week, None)))
    .collect();
    assert_eq!(
        store.apply(old, &BookingLinks::none()).await.unwrap(),
        vec![bus::Outcome::Applied; 3]
    );
    assert!(
        store.mails().await.unwrap().is_empty(),
        "nothing from last week"
    );
    store
        .apply(
            batch(&[("m4", cancelled("e1", "b1", CancelReason::Customer))]),
            &BookingLinks::none(),
        )
        .await
        .unwrap();
    let mails = store.mails().await.unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].mail.id, "cancelled-b1");
    assert_eq!(
        mails[0].mail.to, "ann@example.com",
        "learnt from last week's booking"
    );
}

/// A mail keeps the `traceparent` of the message whose apply queued it, so that its sending
/// joins that trace; a mail queued without one has none.
pub async fn a_mail_keeps_the_trace_of_the_message_that_queued_it(
    store: Arc<dyn NotificationStore>,
) {
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let delivered = vec![
        ("m1".to_owned(), received(created("e1"), Utc::now(), None)),
        (
            "m2".to_owned(),
            received(
                booked("e1", "b1", "ann@example.com"),
                Utc::now(),
                Some(trace),
            ),
        ),
        (
            "m3".to_owned(),
            received(booked("e1", "b2", "bob@example.com"), Utc::now(), None),
        ),
    ];
    store.apply(delivered, &BookingLinks::none()).await.unwrap();
    let traces = |mails: Vec<Mail>| {
        let mut traces: Vec<(String, Option<String>)> =
            mails.into_iter().map(|m| (m.id, m.trace)).collect();
        traces.sort();
        traces
    };
    let expected = vec![
        ("booked-b1".to_owned(), Some(trace.to_owned())),
        ("booked-b2".to_owned(), None),
    ];
    assert_eq!(traces(store.claim(10, LEASE).await.unwrap()), expected);
    let stored = store.mails().await.unwrap();
    assert_eq!(
        traces(stored.into_iter().map(|m| m.mail).collect()),
        expected
    );
}

/// Every check of this suite as a `#[tokio::test]` of the calling test file, each on the store
/// that `$fresh().await` returns beside a guard that keeps its database alive (a temporary
/// folder, a test database). One list for every backend's test file, so a check added to the
/// suite runs on each of them.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!($fresh; every_fact_queues_one_mail_and_redelivery_none, a_guests_mail_carries_its_link_and_no_address_means_no_mail, a_booking_before_its_event_is_retried, mails_are_due_until_sent_and_given_up_when_refused_for_good, the_mail_queue_counts_what_waits_and_when_it_is_due, facts_from_before_the_first_start_are_learnt_not_mailed, a_mail_keeps_the_trace_of_the_message_that_queued_it, a_claimed_mail_is_due_for_no_other_sender_until_its_claim_runs_out);
    };
    ($fresh:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store): (_, std::sync::Arc<dyn $crate::NotificationStore>) = $fresh().await;
            $crate::conformance::$name(store).await;
        }
    )*};
}
