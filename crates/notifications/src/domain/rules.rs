//! The notifications service's decisions, each written once: what a delivered fact teaches the
//! service and which mail it queues ([`Mailer`]); which mails a sender takes, and how an attempt
//! to send one is recorded, with the wait before the next ([`Command`]).
//! They drive a store's [`UnitOfWork`] and never touch a database themselves, so they are
//! tested here with one in memory, and every backend runs them as they are.

use std::time::Duration;

use bus::Outcome;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;

use super::unit::{Attempt, KnownBooking, MailStatus, UnitOfWork};
use super::{BookingLinks, EventInfo, Fact, Mail};

/// A delivered message: its id, and what it told (the shape `bus::apply_once` takes).
pub type Delivered = (String, Received);

/// What a delivered message told, and what its mail needs to know of it.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: DomainEvent,
    /// When the fact happened: facts from before the store was first opened are not mailed.
    pub at: DateTime<Utc>,
    /// The `traceparent` of the span that applied the message, continued by its mail's sending.
    pub trace: Option<String>,
}

/// Applies delivered facts (see `NotificationStore::apply`): `eventCreated` and `eventBooked`
/// teach the service the event and the customer; `eventBooked`, `bookingCancelled` and
/// `userCreated` queue their mail, if the fact happened at or after `since`.
pub struct Mailer<'a> {
    /// The links of a guest's confirmation.
    pub links: &'a BookingLinks,
    /// When the store was first opened, less a minute for clocks (Unix seconds): a service
    /// added to a running system learns from the past without mailing all of it again.
    pub since: i64,
    /// Now (Unix milliseconds): a mail is due from when it is queued, so that mails go out in
    /// the order they became due, retries among them.
    pub now: i64,
}

impl<U: UnitOfWork> bus::unit::Apply<U, Received> for Mailer<'_> {
    async fn apply(&mut self, unit: &mut U, received: &Received) -> Result<Outcome, U::Error> {
        let fact = match &received.event {
            DomainEvent::EventCreated(created) => {
                let event = EventInfo {
                    name: created.name.clone(),
                    starts: created.start_date,
                };
                unit.learn_event(&created.id, &event).await?;
                return Ok(Outcome::Applied);
            }
            DomainEvent::EventBooked(booked) => {
                // The event's eventCreated comes first on every broker (same key); if it has
                // not yet, the booking is retried rather than mailed without its event.
                let Some(event) = unit.event(&booked.event_id).await? else {
                    return Ok(not_known("event", &booked.event_id));
                };
                let booking = KnownBooking {
                    id: booked.booking_id.as_str().into(),
                    event_id: booked.event_id.as_str().into(),
                    email: booked.email.clone(),
                    seats: booked.seats,
                };
                unit.learn_booking(&booking).await?;
                Fact::Booked {
                    booking_id: booking.id.into(),
                    event,
                    seats: booking.seats,
                    email: booking.email,
                    guest: booked.user_id.is_empty(),
                }
            }
            DomainEvent::BookingCancelled(cancelled) => {
                let Some(booking) = unit.booking(&cancelled.booking_id).await? else {
                    return Ok(not_known("booking", &cancelled.booking_id));
                };
                let Some(event) = unit.event(&booking.event_id).await? else {
                    return Ok(not_known("event", &booking.event_id));
                };
                let (id, seats) = (booking.id.into(), cancelled.seats);
                Fact::cancellation(id, event, seats, booking.email, cancelled.reason)
            }
            DomainEvent::UserCreated(user) => Fact::Welcome {
                user_id: user.id.clone(),
                name: user.name.clone(),
                email: user.email.clone(),
            },
            DomainEvent::LocationCreated(_) | DomainEvent::EventCancelled(_) => {
                return Ok(Outcome::Applied);
            }
        };
        if received.at.timestamp() >= self.since
            && let Some(mail) = fact.mail(self.links)
        {
            let trace = received.trace.clone();
            unit.queue_mail(&Mail { trace, ..mail }, self.now).await?;
        }
        Ok(Outcome::Applied)
    }
}

fn not_known(what: &str, id: &str) -> Outcome {
    Outcome::Retry(format!("{what} {id} is not known yet"))
}

/// What a sender or the gRPC service asks of a store, each run by [`run`] in a unit of work of
/// its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Queues a mail asked for directly (the gRPC `SendEmail`), due from now.
    Queue(Mail),
    /// Takes up to `limit` mails due now for one sender, the longest due first: for `lease` they
    /// are due for no other sender, by when this one has recorded each — or has died, and they
    /// come due again.
    Claim { limit: usize, lease: Duration },
    /// Records mails as sent.
    Sent(Vec<String>),
    /// Records a failed attempt: a `permanent` failure (the address refused) makes the mail
    /// `Failed`; another makes it wait [`retry_delay`] and be tried again, without end.
    Failed {
        id: String,
        error: String,
        permanent: bool,
    },
}

/// Runs `command` at `now`: the mails it claimed (none but for a claim).
pub async fn run<U: UnitOfWork>(
    unit: &mut U,
    command: &Command,
    now: i64,
) -> Result<Vec<Mail>, U::Error> {
    match command {
        Command::Queue(mail) => unit.queue_mail(mail, now).await?,
        Command::Claim { limit, lease } => return claim(unit, *limit, *lease, now).await,
        Command::Sent(ids) => {
            for id in ids {
                record(unit, id, None, now).await?;
            }
        }
        Command::Failed {
            id,
            error,
            permanent,
        } => record(unit, id, Some((error, *permanent)), now).await?,
    }
    Ok(Vec::new())
}

async fn claim<U: UnitOfWork>(
    unit: &mut U,
    limit: usize,
    lease: Duration,
    now: i64,
) -> Result<Vec<Mail>, U::Error> {
    let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let mut due = unit.due(now, limit).await?;
    if due.is_empty() {
        return Ok(due);
    }
    let ids: Vec<String> = due.iter().map(|mail| mail.id.clone()).collect();
    let taken = unit.take(&ids, now, until).await?;
    due.retain(|mail| taken.contains(&mail.id));
    Ok(due)
}

/// Records an attempt at mail `id`, sent or `failed` (why, and whether for good); nothing for a
/// mail not queued.
async fn record<U: UnitOfWork>(
    unit: &mut U,
    id: &str,
    failed: Option<(&str, bool)>,
    now: i64,
) -> Result<(), U::Error> {
    let Some(counted) = unit.attempts(id).await? else {
        return Ok(());
    };
    let attempt = match failed {
        None => Attempt {
            counted,
            status: MailStatus::Sent,
            next_attempt: now,
            error: None,
        },
        Some((error, permanent)) => Attempt {
            counted,
            status: match permanent {
                true => MailStatus::Failed,
                false => MailStatus::Pending,
            },
            next_attempt: now.saturating_add(retry_delay(counted.saturating_add(1))),
            error: Some(error),
        },
    };
    unit.record_attempt(id, &attempt).await
}

/// Milliseconds before the next attempt after `attempts` failures: 2 s, 4 s, 8 s … 5 minutes.
pub fn retry_delay(attempts: u32) -> i64 {
    1000 * (1i64 << attempts.min(9)).min(300)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bus::unit::{InMemory, Refused};
    use bus::{apply_once, run_now};
    use contracts::CancelReason;

    use super::*;
    use crate::conformance::{booked, cancelled, created, welcome};

    /// A mail as [`Memory`] keeps it.
    #[derive(Debug, Clone)]
    struct Kept {
        mail: Mail,
        status: MailStatus,
        attempts: u32,
        next_attempt: i64,
        error: Option<String>,
    }

    /// A store's tables in memory: what the rules see of one.
    #[derive(Default)]
    struct Tables {
        events: HashMap<String, EventInfo>,
        bookings: HashMap<String, KnownBooking>,
        /// In the order queued.
        mails: Vec<Kept>,
    }

    type Memory = InMemory<Tables>;

    impl Tables {
        fn mail(&mut self, id: &str) -> Option<&mut Kept> {
            self.mails.iter_mut().find(|kept| kept.mail.id == id)
        }

        fn ids(&self) -> Vec<&str> {
            self.mails
                .iter()
                .map(|kept| kept.mail.id.as_str())
                .collect()
        }
    }

    impl UnitOfWork for Memory {
        async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, Refused> {
            Ok(self.state.events.get(id).cloned())
        }

        async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), Refused> {
            self.state
                .events
                .entry(id.into())
                .or_insert_with(|| event.clone());
            Ok(())
        }

        async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, Refused> {
            Ok(self.state.bookings.get(id).cloned())
        }

        async fn learn_booking(&mut self, booking: &KnownBooking) -> Result<(), Refused> {
            let entry = self.state.bookings.entry(booking.id.to_string());
            entry.or_insert_with(|| booking.clone());
            Ok(())
        }

        async fn queue_mail(&mut self, mail: &Mail, due: i64) -> Result<(), Refused> {
            if self.state.mail(&mail.id).is_none() {
                self.state.mails.push(Kept {
                    mail: mail.clone(),
                    status: MailStatus::Pending,
                    attempts: 0,
                    next_attempt: due,
                    error: None,
                });
            }
            Ok(())
        }

        async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, Refused> {
            let mut due: Vec<&Kept> = (self.state.mails.iter())
                .filter(|kept| kept.status == MailStatus::Pending && kept.next_attempt <= now)
                .collect();
            due.sort_by_key(|kept| kept.next_attempt); // stable: then in the order queued
            Ok(due
                .into_iter()
                .take(limit)
                .map(|k| k.mail.clone())
                .collect())
        }

        async fn take(
            &mut self,
            ids: &[String],
            now: i64,
            until: i64,
        ) -> Result<Vec<String>, Refused> {
            let mut taken = Vec::new();
            for id in ids {
                if let Some(kept) = self.state.mail(id)
                    && kept.status == MailStatus::Pending
                    && kept.next_attempt <= now
                {
                    kept.next_attempt = until;
                    taken.push(id.clone());
                }
            }
            Ok(taken)
        }

        async fn attempts(&mut self, id: &str) -> Result<Option<u32>, Refused> {
            Ok(self.state.mail(id).map(|kept| kept.attempts))
        }

        async fn record_attempt(&mut self, id: &str, attempt: &Attempt<'_>) -> Result<(), Refused> {
            let kept = self
                .state
                .mail(id)
                .ok_or(Refused(format!("no mail {id}")))?;
            assert_eq!(kept.attempts, attempt.counted, "counted as read");
            kept.attempts += 1;
            kept.status = attempt.status;
            kept.next_attempt = attempt.next_attempt;
            if let Some(error) = attempt.error {
                kept.error = Some(error.to_owned());
            }
            Ok(())
        }
    }

    /// When the tests happen (Unix milliseconds), and the facts with them.
    const NOW: i64 = 1_900_000_000_000;

    fn at_now(events: &[(&str, DomainEvent)]) -> Vec<Delivered> {
        let at = DateTime::from_timestamp_millis(NOW).unwrap();
        let received = |event: &DomainEvent| Received {
            event: event.clone(),
            at,
            trace: None,
        };
        events
            .iter()
            .map(|(id, e)| ((*id).to_owned(), received(e)))
            .collect()
    }

    fn apply(unit: &mut Memory, batch: &[Delivered]) -> Vec<Outcome> {
        let links = BookingLinks::none();
        let since = NOW / 1000;
        let mut mailer = Mailer {
            links: &links,
            since,
            now: NOW,
        };
        run_now(apply_once(unit, batch, &mut mailer))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn each_fact_queues_its_mail_to_the_bookings_customer_once() {
        let mut unit = Memory::default();
        let history = at_now(&[
            ("m1", created("e1")),
            ("m2", booked("e1", "b1", "ann@example.com")),
            ("m3", cancelled("e1", "b1", CancelReason::EventCancelled)),
            ("m4", welcome("u1")),
        ]);
        assert_eq!(apply(&mut unit, &history), vec![Outcome::Applied; 4]);
        assert_eq!(
            unit.state.ids(),
            ["booked-b1", "cancelled-b1", "welcome-u1"]
        );
        let cancelled = &unit.state.mails[1].mail;
        assert_eq!(cancelled.to, "ann@example.com", "learnt from the booking");
        assert!(
            cancelled.subject.starts_with("Event cancelled"),
            "{cancelled:?}"
        );
        assert!(
            unit.state.mails.iter().all(|kept| kept.next_attempt == NOW),
            "due from now"
        );

        assert_eq!(apply(&mut unit, &history), vec![Outcome::Duplicate; 4]);
        let mut republished = history.clone();
        republished[1].0 = "m2-again".into();
        apply(&mut unit, &republished);
        assert_eq!(
            unit.state.ids(),
            ["booked-b1", "cancelled-b1", "welcome-u1"]
        );
    }

    #[test]
    fn a_fact_before_what_it_needs_is_retried_and_writes_nothing() {
        let mut unit = Memory::default();
        let early = at_now(&[("m1", booked("e1", "b1", "a@example.com"))]);
        let outcomes = apply(&mut unit, &early);
        assert_eq!(
            outcomes,
            [Outcome::Retry("event e1 is not known yet".into())]
        );
        let early = at_now(&[("m2", cancelled("e1", "b1", CancelReason::Customer))]);
        let outcomes = apply(&mut unit, &early);
        assert_eq!(
            outcomes,
            [Outcome::Retry("booking b1 is not known yet".into())]
        );
        assert!(
            unit.inbox.is_empty() && unit.state.bookings.is_empty() && unit.state.mails.is_empty()
        );
    }

    #[test]
    fn facts_from_before_since_are_learnt_not_mailed_and_a_mail_keeps_its_trace() {
        let mut unit = Memory::default();
        let mut old = at_now(&[
            ("m1", created("e1")),
            ("m2", booked("e1", "b1", "a@x.example")),
        ]);
        for (_, received) in &mut old {
            received.at -= chrono::Duration::seconds(1);
        }
        assert_eq!(apply(&mut unit, &old), vec![Outcome::Applied; 2]);
        assert!(unit.state.mails.is_empty());
        let mut now = at_now(&[("m3", cancelled("e1", "b1", CancelReason::Customer))]);
        now[0].1.trace = Some("00-trace".into());
        apply(&mut unit, &now);
        assert_eq!(unit.state.ids(), ["cancelled-b1"]);
        assert_eq!(unit.state.mails[0].mail.to, "a@x.example");
        assert_eq!(unit.state.mails[0].mail.trace.as_deref(), Some("00-trace"));
    }

    #[test]
    fn a_booking_without_an_address_is_learnt_and_never_mailed() {
        let mut unit = Memory::default();
        let facts = at_now(&[
            ("m1", created("e1")),
            ("m2", booked("e1", "b1", "")),
            ("m3", cancelled("e1", "b1", CancelReason::Customer)),
        ]);
        assert_eq!(apply(&mut unit, &facts), vec![Outcome::Applied; 3]);
        assert!(unit.state.bookings.contains_key("b1"));
        assert!(unit.state.mails.is_empty());
    }

    fn run_at(unit: &mut Memory, command: Command, now: i64) -> Vec<String> {
        let mails = run_now(run(unit, &command, now)).unwrap().unwrap();
        mails.into_iter().map(|mail| mail.id).collect()
    }

    /// Mails `ids`, queued a millisecond apart from `NOW` on.
    fn queued(ids: &[&str]) -> Memory {
        let mut unit = Memory::default();
        for (n, id) in (0..).zip(ids) {
            let mail = Mail::direct((*id).into(), "a@example.com".into(), "hi");
            assert!(run_at(&mut unit, Command::Queue(mail), NOW + n).is_empty());
        }
        unit
    }

    fn claimed(unit: &mut Memory, limit: usize, now: i64) -> Vec<String> {
        let lease = Duration::from_secs(60);
        run_at(unit, Command::Claim { limit, lease }, now)
    }

    #[test]
    fn a_claim_takes_the_longest_due_first_for_its_lease() {
        let mut unit = queued(&["a", "b", "c"]);
        assert!(claimed(&mut unit, 10, NOW - 1).is_empty(), "none due yet");
        assert_eq!(claimed(&mut unit, 2, NOW + 2), ["a", "b"]);
        assert_eq!(claimed(&mut unit, 10, NOW + 5), ["c"]);
        assert!(claimed(&mut unit, 10, NOW + 60_001).is_empty(), "claimed");
        let again = claimed(&mut unit, 10, NOW + 60_005);
        assert_eq!(again, ["a", "b", "c"], "claims ran out");
    }

    #[test]
    fn a_failed_mail_waits_longer_each_time_and_a_refusal_ends_it() {
        let mut unit = queued(&["a", "b"]);
        let fail = |unit: &mut Memory, permanent: bool| {
            let (id, error) = ("a".into(), "refused".into());
            run_at(
                unit,
                Command::Failed {
                    id,
                    error,
                    permanent,
                },
                NOW,
            );
            let kept = unit.state.mail("a").unwrap();
            (kept.status, kept.attempts, kept.next_attempt - NOW)
        };
        let waits: Vec<_> = (0..10).map(|_| fail(&mut unit, false)).collect();
        let pending = |attempts, wait| (MailStatus::Pending, attempts, wait);
        assert_eq!(
            waits[..3],
            [pending(1, 2000), pending(2, 4000), pending(3, 8000)]
        );
        assert_eq!(waits[8..], [pending(9, 300_000), pending(10, 300_000)]);
        assert_eq!(fail(&mut unit, true).0, MailStatus::Failed);
        assert_eq!(claimed(&mut unit, 10, i64::MAX / 2), ["b"], "a given up");

        run_at(
            &mut unit,
            Command::Sent(vec!["b".into(), "gone".into()]),
            NOW,
        );
        let b = unit.state.mail("b").unwrap();
        assert_eq!(
            (b.status, b.attempts, b.error.as_deref()),
            (MailStatus::Sent, 1, None)
        );
        assert_eq!(
            unit.state.mail("a").unwrap().error.as_deref(),
            Some("refused")
        );
    }
}
