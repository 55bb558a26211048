//! SQLite as every MyEvents service uses it: one file per service, one writer thread that
//! commits many requests at once (group commit), and a pool of readers that never wait for it.
//!
//! Why one writer: SQLite allows one writer at a time anyway, and a durable commit costs an
//! fsync. Queuing writes to a single thread lets it put every request that arrived during the
//! previous fsync into the next transaction, so a flash sale pays one fsync per batch instead of
//! one per booking. Each request runs inside its own savepoint, so one request's failure rolls
//! back only its own writes; its caller is answered only after the whole batch is durable. The
//! hottest writes (bookings) are batched once more before they reach the writer (`sql::Batcher`):
//! one job takes every booking that queued up meanwhile.

mod db;
pub mod inbox;
pub mod outbox;

pub use db::{Db, DbError, Options, stored};
pub use rusqlite;
