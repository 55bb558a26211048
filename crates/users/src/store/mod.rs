//! Where the users service keeps accounts. One trait, one module per backend, one conformance
//! suite ([`crate::conformance`]) that every backend passes.

#[cfg(feature = "dynamodb")]
mod dynamo;
#[cfg(feature = "mongodb")]
mod mongo;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use contracts::{DomainEvent, Envelope, UserCreated};

use crate::domain::User;

#[cfg(feature = "dynamodb")]
pub use self::dynamo::DynamoUserStore;
#[cfg(feature = "mongodb")]
pub use self::mongo::MongoUserStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PgUserStore;
pub use self::sqlite::SqliteUserStore;

pub use platform::StoreError;

/// An account as stored: the user and its Argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    pub password_hash: String,
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Stores a new account with its `userCreated`; false (and nothing stored) when the e-mail
    /// is taken.
    async fn create(&self, account: Account) -> Result<bool, StoreError>;
    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError>;
    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Makes the account with this e-mail an admin with this password, creating it if needed.
    async fn set_admin(&self, account: Account) -> Result<User, StoreError>;

    fn outbox(&self) -> Arc<dyn bus::Outbox>;
    async fn check(&self) -> Result<(), String>;
}

/// The `userCreated` a new account emits, whatever stores it.
fn user_created(u: &User) -> Envelope {
    let created = DomainEvent::UserCreated(UserCreated {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
    });
    Envelope::new(&created, None)
}
