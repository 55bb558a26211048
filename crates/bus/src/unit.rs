//! The unit of work every store gives its service's rules: one transaction (or, for DynamoDB, one
//! set of conditional writes) in which a change, its inbox record and the events it causes
//! commit together or not at all. Each service's domain extends [`Unit`] with the storage
//! primitives its rules need and writes each rule once, against the trait; each backend
//! implements the primitives only.
//!
//! The futures of these traits are `Send` exactly when the backend's are: PostgreSQL's, MongoDB's
//! and DynamoDB's run on the runtime, SQLite's run on its writer thread, where [`run_now`] drives
//! them (they never wait: every step is a synchronous call on the connection).
#![allow(async_fn_in_trait)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use contracts::Envelope;

use crate::Outcome;

pub trait Unit {
    /// The backend's error; a rule that finds stored data it cannot read says so with
    /// [`Corrupt`].
    type Error: From<Corrupt>;

    /// Records `message_id` as applied in this unit; false when the inbox holds it already (a
    /// redelivery), and then nothing is recorded.
    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Self::Error>;

    /// Takes back a [`Unit::first_delivery`] whose message was not applied after all.
    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Self::Error>;

    /// Appends `event` to the outbox, to be published once this unit commits.
    async fn emit(&mut self, event: &Envelope) -> Result<(), Self::Error>;
}

/// Stored data a rule cannot read (an answer or an event kept as JSON that no longer parses): a
/// bug or damage, never the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored data does not parse: {0}")]
pub struct Corrupt(pub String);

/// What a service does with one delivered message `E` (usually the [`contracts::DomainEvent`];
/// a consumer that needs more of the envelope takes a pair), in a unit `U`. A trait rather than
/// a closure: a closure over a unit that borrows a connection cannot be proven `Send` for every
/// lifetime, and the stores' futures must be `Send`.
pub trait Apply<U: Unit, E> {
    async fn apply(&mut self, unit: &mut U, message: &E) -> Result<Outcome, U::Error>;
}

/// Applies `batch` in order inside one unit, each message at most once. A message id the inbox
/// holds is a `Duplicate`, and `rule` is not asked. What `rule` answers decides what is
/// recorded: `Applied` goes into the inbox with its effect; `Retry` and `Poison` record nothing,
/// so the rule must not have written or emitted anything for them. Processing stops after the
/// first `Retry`, as [`crate::Handler::handle`] requires.
pub async fn apply_once<U: Unit, E>(
    unit: &mut U,
    batch: &[(String, E)],
    rule: &mut impl Apply<U, E>,
) -> Result<Vec<Outcome>, U::Error> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for (message_id, event) in batch {
        // Recorded first, one statement on the common path; taken back if not applied.
        if !unit.first_delivery(message_id).await? {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let outcome = rule.apply(unit, event).await?;
        if outcome != Outcome::Applied {
            unit.forget_delivery(message_id).await?;
        }
        let stop = matches!(outcome, Outcome::Retry(_));
        outcomes.push(outcome);
        if stop {
            break;
        }
    }
    Ok(outcomes)
}

/// A unit of work in memory, for testing a service's rules without a database: the inbox, the
/// events emitted and the service's own tables `S`, for which the service implements its unit of
/// work. Not a store: nothing in it is concurrent or durable.
#[derive(Debug, Default)]
pub struct InMemory<S> {
    pub inbox: Vec<String>,
    pub emitted: Vec<Envelope>,
    pub state: S,
}

/// Why a primitive of an [`InMemory`] unit refused; a test that fails prints it.
#[derive(Debug)]
pub struct Refused(#[allow(dead_code)] pub String);

impl From<Corrupt> for Refused {
    fn from(e: Corrupt) -> Self {
        Refused(e.0)
    }
}

impl<S> Unit for InMemory<S> {
    type Error = Refused;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Refused> {
        if self.inbox.iter().any(|m| m == message_id) {
            return Ok(false);
        }
        self.inbox.push(message_id.to_owned());
        Ok(true)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Refused> {
        self.inbox.retain(|m| m != message_id);
        Ok(())
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), Refused> {
        self.emitted.push(event.clone());
        Ok(())
    }
}

/// A future that was expected to finish at its first poll waited instead: a unit whose
/// primitives are synchronous awaited something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a synchronous unit of work waited on something")]
pub struct WouldWait;

/// Runs a future whose every step is synchronous (a SQLite unit's rules on the writer thread)
/// to its end, in one poll.
pub fn run_now<F: Future>(future: F) -> Result<F::Output, WouldWait> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(WouldWait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Memory = InMemory<()>;

    fn batch(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(id, what)| ((*id).to_owned(), (*what).to_owned()))
            .collect()
    }

    /// Answers what each message says.
    struct ByName;

    impl Apply<Memory, String> for ByName {
        async fn apply(&mut self, _: &mut Memory, what: &String) -> Result<Outcome, Refused> {
            Ok(match what.as_str() {
                "retry" => Outcome::Retry("later".into()),
                "poison" => Outcome::Poison("never".into()),
                _ => Outcome::Applied,
            })
        }
    }

    #[test]
    fn each_message_is_applied_once_and_only_applied_ones_are_recorded() {
        let mut unit = Memory::default();
        let first = batch(&[("a", "ok"), ("a", "ok"), ("p", "poison"), ("b", "ok")]);
        let outcomes = run_now(apply_once(&mut unit, &first, &mut ByName))
            .unwrap()
            .unwrap();
        assert_eq!(
            outcomes,
            [
                Outcome::Applied,
                Outcome::Duplicate,
                Outcome::Poison("never".into()),
                Outcome::Applied
            ]
        );
        assert_eq!(unit.inbox, ["a", "b"]);
    }

    #[test]
    fn a_retry_stops_the_batch_and_records_nothing() {
        let mut unit = Memory::default();
        let messages = batch(&[("a", "ok"), ("r", "retry"), ("c", "ok")]);
        let outcomes = run_now(apply_once(&mut unit, &messages, &mut ByName))
            .unwrap()
            .unwrap();
        assert_eq!(outcomes, [Outcome::Applied, Outcome::Retry("later".into())]);
        assert_eq!(unit.inbox, ["a"]);
    }

    #[test]
    fn a_future_that_waits_is_refused_not_spun() {
        assert_eq!(run_now(std::future::pending::<()>()), Err(WouldWait));
        assert_eq!(run_now(async { 7 }), Ok(7));
    }
}
