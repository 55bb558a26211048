//! Black-box tests: each starts the real `myevents` binary on random ports with a fresh data
//! folder and talks to it over HTTP, as a client would.

mod bookings;
mod dynamo;
mod events;
mod helpers;
mod interop;
mod invariants;
mod mixed;
mod mongo;
mod notifications;
mod postgres;
mod serving;
mod users;
