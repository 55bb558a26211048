//! The users service's decisions, each written once: signing up (one account per e-mail
//! address, announced with `userCreated`), making an admin, and counting failed sign-ins. They drive a store's
//! [`UnitOfWork`] and never touch a database themselves, so they are tested here with one in
//! memory, and every backend runs them as they are.

use bus::unit::Corrupt;
use contracts::{DomainEvent, Envelope, UserCreated};
use platform::Role;

use super::unit::UnitOfWork;
use super::{Account, User};
use crate::signin::Failures;

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

/// Counts a failed sign-in under `key` at `now` (Unix ms): one more, or 1 again when the count
/// had expired by `now`; it then expires at `expires`. When another replica counted meanwhile,
/// it counts again on what is there now, so that no failure is lost.
pub async fn count_failure<U: UnitOfWork>(
    unit: &mut U,
    key: &str,
    now: i64,
    expires: i64,
) -> Result<(), U::Error> {
    loop {
        let read = unit.failures(key).await?;
        let count = match &read {
            Some(live) if live.expires > now => live.count.saturating_add(1),
            _ => 1,
        };
        let counted = Failures {
            count,
            last: now,
            expires,
        };
        if unit.put_failures(key, read.as_ref(), &counted).await? {
            return Ok(());
        }
    }
}

/// The `userCreated` a new account emits.
fn user_created(u: &User) -> Envelope {
    let created = DomainEvent::UserCreated(UserCreated {
        id: u.id.to_string(),
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
        assert_eq!(unit.state.accounts, [account("u1", "a@x.io")]);
        let names: Vec<&str> = unit.emitted.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["userCreated"]);
    }

    #[test]
    fn an_admin_is_signed_up_or_promoted_keeping_the_account() {
        let mut unit = Memory::default();
        let boss = run_now(set_admin(&mut unit, &account("a1", "boss@x.io")));
        assert_eq!(boss.unwrap().unwrap().role, Role::Admin);
        assert_eq!(
            unit.state.accounts[0].user.role,
            Role::Admin,
            "stored as admin"
        );
        run_now(sign_up(&mut unit, &account("u1", "ann@x.io")))
            .unwrap()
            .unwrap();
        let promoted = run_now(set_admin(&mut unit, &account("ignored", "ann@x.io")));
        let promoted = promoted.unwrap().unwrap();
        assert_eq!((promoted.id.as_str(), promoted.role), ("u1", Role::Admin));
        let stored = &unit.state.accounts[1];
        assert_eq!(
            (stored.user.role, stored.password_hash.as_str()),
            (Role::Admin, "hash of ignored")
        );
        assert_eq!(unit.emitted.len(), 2, "no userCreated for a promotion");
    }

    #[test]
    fn failures_count_up_until_they_expire_and_none_is_lost_to_another_replica() {
        let mut unit = Memory::default();
        let count = |unit: &mut Memory, now, expires| {
            run_now(count_failure(unit, "k", now, expires))
                .unwrap()
                .unwrap();
            unit.state.failures.get("k").copied()
        };
        count(&mut unit, 1_000, 5_000);
        let two = count(&mut unit, 2_000, 6_000);
        let expect = |count, last, expires| Failures {
            count,
            last,
            expires,
        };
        assert_eq!(two, Some(expect(2, 2_000, 6_000)));
        // Another replica counts between this one's read and its write: counted on top of it.
        unit.state.interloper = Some(expect(7, 2_500, 6_500));
        assert_eq!(
            count(&mut unit, 3_000, 7_000),
            Some(expect(8, 3_000, 7_000))
        );
        assert_eq!(
            count(&mut unit, 7_000, 9_000),
            Some(expect(1, 7_000, 9_000))
        );
        assert_eq!(
            count(&mut unit, 9_000, u32::MAX.into()).map(|f| f.count),
            Some(1),
            "expired at 9 000"
        );
        unit.state
            .failures
            .insert("k".into(), expect(u32::MAX, 0, 20_000));
        assert_eq!(
            count(&mut unit, 10_000, 20_000).map(|f| f.count),
            Some(u32::MAX)
        );
    }
}
