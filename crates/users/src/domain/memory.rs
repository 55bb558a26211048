//! A unit of work in memory, for testing the rules without a database.

use std::collections::BTreeMap;

use bus::unit::Corrupt;
use contracts::Envelope;
use platform::Role;

use super::Account;
use super::unit::UnitOfWork;
use crate::signin::Failures;

/// Why a primitive failed; read only when a failing test prints it.
#[derive(Debug)]
pub struct Failed(#[allow(dead_code)] pub String);

impl From<Corrupt> for Failed {
    fn from(e: Corrupt) -> Self {
        Failed(e.0)
    }
}

#[derive(Default)]
pub struct Memory {
    pub accounts: Vec<Account>,
    pub emitted: Vec<Envelope>,
    pub failures: BTreeMap<String, Failures>,
    /// What another replica counts between the next read of failures and its write.
    pub interloper: Option<Failures>,
}

impl bus::Unit for Memory {
    type Error = Failed;

    async fn first_delivery(&mut self, _: &str) -> Result<bool, Failed> {
        Err(Failed("the users service consumes no messages".into()))
    }

    async fn forget_delivery(&mut self, _: &str) -> Result<(), Failed> {
        Err(Failed("the users service consumes no messages".into()))
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), Failed> {
        self.emitted.push(event.clone());
        Ok(())
    }
}

impl UnitOfWork for Memory {
    async fn insert_account(&mut self, account: &Account) -> Result<bool, Failed> {
        if self.account(&account.user.email).await?.is_some() {
            return Ok(false);
        }
        self.accounts.push(account.clone());
        Ok(true)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, Failed> {
        Ok(self
            .accounts
            .iter()
            .find(|a| a.user.email == email)
            .cloned())
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), Failed> {
        let account = self.accounts.iter_mut().find(|a| a.user.id == id);
        let account = account.ok_or(Failed(format!("no account {id}")))?;
        account.user.role = Role::Admin;
        account.password_hash = password_hash.to_owned();
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, Failed> {
        Ok(self.failures.get(key).copied())
    }

    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        counted: &Failures,
    ) -> Result<bool, Failed> {
        if let Some(theirs) = self.interloper.take() {
            self.failures.insert(key.to_owned(), theirs);
        }
        if self.failures.get(key) != read {
            return Ok(false);
        }
        self.failures.insert(key.to_owned(), *counted);
        Ok(true)
    }
}
