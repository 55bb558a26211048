//! What the users rules ([`super::rules`]) need of a store: storage primitives inside the
//! store's unit of work ([`bus::Unit`]: one transaction with its outbox). No primitive decides
//! anything; the rules do.
#![allow(async_fn_in_trait)]

use super::Account;

pub trait UnitOfWork: bus::Unit {
    /// Inserts the account unless one has its e-mail address; whether it did. The address is
    /// unique by the store's own constraint, so of two sign-ups with one address at once, one
    /// finds it taken.
    async fn insert_account(&mut self, account: &Account) -> Result<bool, Self::Error>;

    /// The account with this e-mail address.
    async fn account(&mut self, email: &str) -> Result<Option<Account>, Self::Error>;

    /// Makes the account `id` an admin whose password has this hash.
    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), Self::Error>;
}
