//! What the users rules ([`super::rules`]) need of a store: storage primitives inside the
//! store's unit of work ([`bus::Unit`]: one transaction with its outbox). No primitive decides
//! anything; the rules do.
#![allow(async_fn_in_trait)]

use super::Account;
use crate::signin::Failures;

pub trait UnitOfWork: bus::Unit {
    /// Inserts the account unless one has its e-mail address; whether it did. The address is
    /// unique by the store's own constraint, so of two sign-ups with one address at once, one
    /// finds it taken.
    async fn insert_account(&mut self, account: &Account) -> Result<bool, Self::Error>;

    /// The account with this e-mail address.
    async fn account(&mut self, email: &str) -> Result<Option<Account>, Self::Error>;

    /// Makes the account `id` an admin whose password has this hash.
    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), Self::Error>;

    /// The failed sign-ins counted under `key`.
    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, Self::Error>;

    /// Sets the failures counted under `key` to `counted`, unless they are no longer `read`
    /// (another replica counted meanwhile): then false, and nothing changes. A store that
    /// writes when its unit commits refuses the commit instead, and the rule is made again.
    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        counted: &Failures,
    ) -> Result<bool, Self::Error>;
}
