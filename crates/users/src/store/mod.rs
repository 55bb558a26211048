//! Where the users service keeps accounts. One trait, one module per backend, one conformance
//! suite ([`crate::conformance`]) that every backend passes.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::domain::Account;
use crate::domain::User;
pub use crate::signin::Failures;

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoUserStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoUserStore;
pub use self::sql::SqlUserStore;

pub use platform::StoreError;

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Stores a new account with its `userCreated`; false (and nothing stored) when the e-mail
    /// is taken ([`crate::domain::rules::sign_up`]).
    async fn create(&self, account: Account) -> Result<bool, StoreError>;
    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError>;
    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Makes the account with this e-mail an admin with this password, creating it if needed
    /// ([`crate::domain::rules::set_admin`]).
    async fn set_admin(&self, account: Account) -> Result<User, StoreError>;

    /// The failed sign-ins counted under `key` ([`crate::signin::Keys`]), expired or not: the
    /// rule ignores expired ones.
    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError>;
    /// Counts a failed sign-in under `key` at `now` (Unix ms): one more, or 1 again when the
    /// count had expired by `now`; it then expires at `expires`
    /// ([`crate::domain::rules::count_failure`]). Replicas sharing the database lose no
    /// failure when they count at once. Counts expired
    /// by `now` are deleted here, or, on DynamoDB, by the table's time to live, so that the
    /// failures of the past do not pile up.
    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError>;
    /// Forgets the failures counted under `key` (a successful sign-in).
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError>;

    fn outbox(&self) -> Arc<dyn bus::Outbox>;
    async fn check(&self) -> Result<(), String>;
}
