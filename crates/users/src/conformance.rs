//! What every [`UserStore`] backend must do. Each function takes a fresh, empty store.

use std::sync::Arc;

use platform::Role;

use crate::domain::User;
use crate::store::{Account, Failures, UserStore};

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

pub async fn failures_count_up_expire_and_clear(store: Arc<dyn UserStore>) {
    assert_eq!(store.failures("k").await.unwrap(), None);
    store.add_failure("k", 1_000, 5_000).await.unwrap();
    store.add_failure("k", 2_000, 6_000).await.unwrap();
    let two = Failures {
        count: 2,
        last: 2_000,
        expires: 6_000,
    };
    assert_eq!(store.failures("k").await.unwrap(), Some(two));
    assert_eq!(store.failures("j").await.unwrap(), None, "keys count apart");
    store.add_failure("j", 2_500, 7_000).await.unwrap();
    assert_eq!(store.failures("k").await.unwrap(), Some(two));

    // A failure at or after the count's expiry starts it again.
    store.add_failure("k", 6_000, 10_000).await.unwrap();
    assert_eq!(
        store.failures("k").await.unwrap(),
        Some(Failures {
            count: 1,
            last: 6_000,
            expires: 10_000
        })
    );

    store.clear_failures("k").await.unwrap();
    assert_eq!(store.failures("k").await.unwrap(), None);
    store.clear_failures("never-failed").await.unwrap();
}

/// Replicas of the service share one limit: `second` is another store on `store`'s database
/// (another process), and failures counted by both at once all count. Not in
/// [`conformance_tests!`]: opening a second store is each backend's own.
pub async fn replicas_share_the_failure_counts(
    store: Arc<dyn UserStore>,
    second: Arc<dyn UserStore>,
) {
    let expires = 1_000_000;
    store.add_failure("k", 1, expires).await.unwrap();
    assert_eq!(
        second.failures("k").await.unwrap().map(|f| f.count),
        Some(1)
    );

    let count = |s: Arc<dyn UserStore>, at: i64| async move {
        s.add_failure("k", at, expires).await.unwrap();
    };
    let mut both = Vec::new();
    for i in 0..8 {
        both.push(tokio::spawn(count(store.clone(), 10 + i)));
        both.push(tokio::spawn(count(second.clone(), 10 + i)));
    }
    for task in both {
        task.await.unwrap();
    }
    assert_eq!(
        store.failures("k").await.unwrap().map(|f| f.count),
        Some(17),
        "no failure lost when two replicas count at once"
    );

    second.clear_failures("k").await.unwrap();
    assert_eq!(store.failures("k").await.unwrap(), None);
}

/// A failure deletes the counts that have expired, so that the failures of the past do not pile
/// up. Not in [`conformance_tests!`]: DynamoDB leaves that to the table's time to live.
pub async fn expired_failures_are_pruned(store: Arc<dyn UserStore>) {
    store.add_failure("old", 0, 1_000).await.unwrap();
    store.add_failure("live", 0, 9_000).await.unwrap();
    assert!(store.failures("old").await.unwrap().is_some());
    store.add_failure("new", 1_000, 9_000).await.unwrap();
    assert_eq!(store.failures("old").await.unwrap(), None);
    assert!(store.failures("live").await.unwrap().is_some());
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
        $crate::conformance_tests!(
            $fresh;
            accounts_are_unique_by_email,
            set_admin_creates_or_promotes,
            failures_count_up_expire_and_clear
        );
    };
    ($fresh:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, store): (_, std::sync::Arc<dyn $crate::UserStore>) = $fresh().await;
            $crate::conformance::$name(store).await;
        }
    )*};
}
