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

/// Starting twice (two processes, or a restart) runs the migrations again harmlessly: `reopen`
/// opens a second store on `store`'s database and migrates it, and that store still finds what
/// the first one stored. Not in [`conformance_tests!`]: reopening is each backend's own.
pub async fn migrating_again_keeps_the_data<F, Fut>(store: Arc<dyn UserStore>, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn UserStore>>,
{
    assert!(
        store
            .create(account("u1", "ann@example.com"))
            .await
            .unwrap()
    );
    let again = reopen().await;
    assert_eq!(
        again.by_id("u1").await.unwrap().map(|u| u.email),
        Some("ann@example.com".into())
    );
}

/// Every check of this suite as a `#[tokio::test]` of the calling test file, each on the store
/// that `$fresh().await` returns beside a guard that keeps its database alive (a temporary
/// folder, a test database). One list for every backend's test file, so a check added to the
/// suite runs on each of them.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!($fresh; accounts_are_unique_by_email, set_admin_creates_or_promotes);
    };
    ($fresh:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store): (_, std::sync::Arc<dyn $crate::UserStore>) = $fresh().await;
            $crate::conformance::$name(store).await;
        }
    )*};
}
