//! A unit of work in memory, for testing the rules without a database.

use std::collections::BTreeMap;

use bus::unit::{InMemory, Refused};
use platform::Role;

use super::Account;
use super::unit::UnitOfWork;
use crate::signin::Failures;

/// The users service's tables, in memory.
#[derive(Default)]
pub struct Tables {
    pub accounts: Vec<Account>,
    pub failures: BTreeMap<String, Failures>,
    /// What another replica counts between the next read of failures and its write.
    pub interloper: Option<Failures>,
}

pub type Memory = InMemory<Tables>;

impl UnitOfWork for Memory {
    async fn insert_account(&mut self, account: &Account) -> Result<bool, Refused> {
        if self.account(&account.user.email).await?.is_some() {
            return Ok(false);
        }
        self.state.accounts.push(account.clone());
        Ok(true)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, Refused> {
        Ok(self
            .state
            .accounts
            .iter()
            .find(|a| a.user.email == email)
            .cloned())
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), Refused> {
        let account = self.state.accounts.iter_mut().find(|a| a.user.id == id);
        let account = account.ok_or(Refused(format!("no account {id}")))?;
        account.user.role = Role::Admin;
        account.password_hash = password_hash.to_owned();
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, Refused> {
        Ok(self.state.failures.get(key).copied())
    }

    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        counted: &Failures,
    ) -> Result<bool, Refused> {
        if let Some(theirs) = self.state.interloper.take() {
            self.state.failures.insert(key.to_owned(), theirs);
        }
        if self.state.failures.get(key) != read {
            return Ok(false);
        }
        self.state.failures.insert(key.to_owned(), *counted);
        Ok(true)
    }
}
