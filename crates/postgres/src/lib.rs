//! PostgreSQL as a MyEvents service uses it: a connection pool that reconnects by itself, the
//! service's tables in a schema of its own, idempotent migrations, and the outbox and inbox
//! tables every service shares (see `crates/sqlite` for the embedded counterpart).
//!
//! Why a schema per service: one database (one `storage.url`) may hold every service, and each
//! service has an `outbox` of its own; in its own schema no service sees another's tables.

mod db;
pub mod inbox;
pub mod outbox;
pub mod replay_lock;
pub mod testing;

pub use db::{Options, Pg, PgError, PgQuery, drop_schema, int, query, replace_schema, stored};
pub use outbox::PgOutbox;
pub use sqlx;
