//! Black-box tests: each starts the real `myevents` binary on random ports with a fresh data
//! folder and talks to it over HTTP, as a client would.
//!
//! The tests of a backend this build lacks (a cargo feature of `myevents`) are left out;
//! `scripts/test` builds every feature.

mod bookings;
#[cfg(feature = "dynamodb")]
mod dynamo;
mod errors;
mod events;
mod hardening;
mod helpers;
#[cfg(feature = "rabbitmq")]
mod interop;
mod invariants;
mod metrics;
#[cfg(feature = "full")]
mod mixed;
#[cfg(feature = "mongodb")]
mod mongo;
mod notifications;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod replicas;
mod serving;
mod signin;
mod traces;
mod users;
