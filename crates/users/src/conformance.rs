//! What every [`UserStore`] backend must do. Each function takes a fresh, empty store.

use std::sync::Arc;

use platform::Role;

use crate::domain::User;
use crate::store::{Account, UserStore};

pub fn account(id: &str, email: &str) -> Account {
    Account {
        user: User {
            id: id.into(),
            email: email.into(),
            name: "Ann".into(),
            role: Role::Customer,
        },
        password_hash: "$argon2id$fake".into(),
    }
}

pub async fn accounts_are_unique_by_email(store: Arc<dyn UserStore>) {
    assert!(
        store
            .create(account("u1", "ann@example.com"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .create(account("u2", "ann@example.com"))
            .await
            .unwrap(),
        "e-mail taken"
    );
    assert_eq!(
        store.by_email("ann@example.com").await.unwrap(),
        Some(account("u1", "ann@example.com"))
    );
    assert_eq!(
        store.by_id("u1").await.unwrap().map(|u| u.email),
        Some("ann@example.com".into())
    );
    assert_eq!(store.by_id("u2").await.unwrap(), None);
    let pending = store.outbox().pending(0, 10).await.unwrap();
    let names: Vec<_> = pending.iter().map(|(_, e)| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["userCreated"],
        "one userCreated, none for the refused duplicate"
    );
}

pub async fn set_admin_creates_or_promotes(store: Arc<dyn UserStore>) {
    let mut admin = account("a1", "boss@example.com");
    admin.user.role = Role::Admin;
    assert_eq!(
        store.set_admin(admin.clone()).await.unwrap().role,
        Role::Admin
    );
    store
        .create(account("u1", "ann@example.com"))
        .await
        .unwrap();
    let mut promote = account("ignored", "ann@example.com");
    promote.password_hash = "$argon2id$new".into();
    let promoted = store.set_admin(promote).await.unwrap();
    assert_eq!((promoted.id.as_str(), promoted.role), ("u1", Role::Admin));
    let stored = store.by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(stored.password_hash, "$argon2id$new");
}
