//! MongoDB as a MyEvents service uses it: a client that connects (and reconnects) by itself,
//! the service's collections and indexes in a database of its own, transactions retried when
//! they conflict, and the outbox and inbox collections every service shares (see
//! `crates/postgres` for the PostgreSQL counterpart).
//!
//! Why a database per service (`<database of the URL, or myevents>_<service>`): one server (one
//! `storage.url`) may hold every service, and each service has an `outbox` of its own; in its
//! own database no service sees another's collections.

mod db;
pub mod inbox;
pub mod outbox;
pub mod testing;
mod tx;

pub use db::{Collection, Mongo, MongoError, Options};
pub use inbox::MongoUnit;
pub use mongodb;
pub use mongodb::bson;
pub use outbox::MongoOutbox;
pub use tx::{Tx, TxFuture};
