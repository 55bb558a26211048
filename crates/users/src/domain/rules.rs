//! The users service's decisions, each written once: signing up (one account per e-mail
//! address, announced with `userCreated`) and making an admin. They drive a store's
//! [`UnitOfWork`] and never touch a database themselves, so they are tested here with one in
//! memory, and every backend runs them as they are.

use bus::unit::Corrupt;
use contracts::{DomainEvent, Envelope, UserCreated};
use platform::Role;

use super::unit::UnitOfWork;
use super::{Account, User};

/// Stores a new account with its `userCreated`; false (and nothing stored) when its e-mail
/// address is taken.
pub async fn sign_up<U: UnitOfWork>(unit: &mut U, account: &Account) -> Result<bool, U::Error> {
    if !unit.insert_account(account).await? {
        return Ok(false);
    }
    unit.emit(&user_created(&account.user)).await?;
    Ok(true)
}

/// Makes the account with `account`'s e-mail address an admin with its password, signing it up
/// (as an admin) if there is none.
pub async fn set_admin<U: UnitOfWork>(unit: &mut U, account: &Account) -> Result<User, U::Error> {
    let mut admin = account.clone();
    admin.user.role = Role::Admin;
    if sign_up(unit, &admin).await? {
        return Ok(admin.user);
    }
    let email = &account.user.email;
    let Some(taken) = unit.account(email).await? else {
        return Err(Corrupt(format!("the e-mail address {email} is taken by no account")).into());
    };
    unit.make_admin(&taken.user.id, &account.password_hash)
        .await?;
    Ok(User {
        role: Role::Admin,
        ..taken.user
    })
}

/// The `userCreated` a new account emits.
fn user_created(u: &User) -> Envelope {
    let created = DomainEvent::UserCreated(UserCreated {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
    });
    Envelope::new(&created, platform::telemetry::traceparent())
}

#[cfg(test)]
mod tests {
    use bus::run_now;

    use super::*;
    use crate::domain::memory::Memory;

    fn account(id: &str, email: &str) -> Account {
        Account {
            user: User {
                id: id.into(),
                email: email.into(),
                name: "Ann".into(),
                role: Role::Customer,
            },
            password_hash: format!("hash of {id}"),
        }
    }

    #[test]
    fn an_address_signs_up_once_with_one_user_created() {
        let mut unit = Memory::default();
        let first = run_now(sign_up(&mut unit, &account("u1", "a@x.io")));
        assert!(first.unwrap().unwrap());
        let again = run_now(sign_up(&mut unit, &account("u2", "a@x.io")));
        assert!(!again.unwrap().unwrap());
        assert_eq!(unit.accounts, [account("u1", "a@x.io")]);
        let names: Vec<&str> = unit.emitted.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["userCreated"]);
    }

    #[test]
    fn an_admin_is_signed_up_or_promoted_keeping_the_account() {
        let mut unit = Memory::default();
        let boss = run_now(set_admin(&mut unit, &account("a1", "boss@x.io")));
        assert_eq!(boss.unwrap().unwrap().role, Role::Admin);
        assert_eq!(unit.accounts[0].user.role, Role::Admin, "stored as admin");
        run_now(sign_up(&mut unit, &account("u1", "ann@x.io")))
            .unwrap()
            .unwrap();
        let promoted = run_now(set_admin(&mut unit, &account("ignored", "ann@x.io")));
        let promoted = promoted.unwrap().unwrap();
        assert_eq!((promoted.id.as_str(), promoted.role), ("u1", Role::Admin));
        let stored = &unit.accounts[1];
        assert_eq!(
            (stored.user.role, stored.password_hash.as_str()),
            (Role::Admin, "hash of ignored")
        );
        assert_eq!(unit.emitted.len(), 2, "no userCreated for a promotion");
    }
}
