use std::sync::Arc;

use async_trait::async_trait;
use dynamo::item::{Item, get_n, get_s, item, n, s};
use dynamo::{Commit, Dynamo, DynamoError, KeyKind, Options, Table, Write, outbox};
use platform::Role;

use super::{Account, Failures, StoreError, UserStore, user_created};
use crate::domain::User;

const USERS: &str = "users";
/// One item per e-mail address, naming its user: put on condition that none exists, in the
/// transaction that puts the user, it is what keeps addresses unique.
const EMAILS: &str = "emails";
/// Failed sign-ins by `key`: `count`, `last`, `expires` (Unix ms), and `ttl` (Unix seconds),
/// by which DynamoDB deletes the expired ones itself.
const FAILURES: &str = "signin_failures";

/// The users service's tables in DynamoDB: `<prefix>.users.*`.
pub struct DynamoUserStore {
    db: Dynamo,
}

impl DynamoUserStore {
    /// Prepares the store without connecting; see [`Dynamo::open`].
    pub fn connect(url: &str) -> Result<Self, DynamoError> {
        let db = Dynamo::open(
            url,
            Options {
                service: "users",
                tables: vec![
                    Table::new(USERS, ("id", KeyKind::S)),
                    Table::new(EMAILS, ("email", KeyKind::S)),
                    Table::new(FAILURES, ("key", KeyKind::S)).expiring("ttl"),
                    outbox::table(),
                ],
            },
        )?;
        Ok(Self { db })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), DynamoError> {
        self.db.create_tables().await
    }

    /// Puts the account unless its e-mail is taken; whether it did.
    async fn insert(&self, account: &Account) -> Result<bool, DynamoError> {
        let u = &account.user;
        let user = item([
            ("id", s(&u.id)),
            ("email", s(&u.email)),
            ("name", s(&u.name)),
            ("role", s(u.role.as_str())),
            ("password_hash", s(&account.password_hash)),
        ]);
        let writes = vec![
            Write::put(
                self.db.table(EMAILS),
                item([("email", s(&u.email)), ("id", s(&u.id))]),
            )
            .when("attribute_not_exists(email)"),
            Write::put(self.db.table(USERS), user).when("attribute_not_exists(id)"),
        ];
        Ok(self.db.commit(writes, &[user_created(u)]).await? == Commit::Done)
    }

    async fn account_by_id(&self, id: &str) -> Result<Option<Account>, DynamoError> {
        self.db
            .get(USERS, item([("id", s(id))]))
            .await?
            .map(|i| account(&i))
            .transpose()
    }
}

fn account(i: &Item) -> Result<Account, DynamoError> {
    Ok(Account {
        user: User {
            id: get_s(i, "id")?,
            email: get_s(i, "email")?,
            name: get_s(i, "name")?,
            role: platform::error::stored("role", &get_s(i, "role")?, Role::parse)?,
        },
        password_hash: get_s(i, "password_hash")?,
    })
}

#[async_trait]
impl UserStore for DynamoUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        Ok(self.insert(&account).await?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let Some(owner) = self.db.get(EMAILS, item([("email", s(email))])).await? else {
            return Ok(None);
        };
        Ok(self.account_by_id(&get_s(&owner, "id")?).await?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.account_by_id(id).await?.map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        if !self.insert(&account).await? {
            let taken = self.by_email(&account.user.email).await?.ok_or_else(|| {
                DynamoError::Data(format!("e-mail {} names no user", account.user.email))
            })?;
            let promote = Write::update(
                self.db.table(USERS),
                item([("id", s(&taken.user.id))]),
                "SET #role = :admin, password_hash = :hash",
            )
            .name("#role", "role")
            .value(":admin", s(Role::Admin.as_str()))
            .value(":hash", s(&account.password_hash));
            self.db.write(promote).await?;
        }
        let admin = self
            .by_email(&account.user.email)
            .await?
            .ok_or_else(|| DynamoError::Data(format!("admin {} vanished", account.user.email)))?;
        Ok(admin.user)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let Some(found) = self.db.get(FAILURES, item([("key", s(key))])).await? else {
            return Ok(None);
        };
        Ok(Some(Failures {
            count: u32::try_from(get_n::<u64>(&found, "count")?).unwrap_or(u32::MAX),
            last: get_n(&found, "last")?,
            expires: get_n(&found, "expires")?,
        }))
    }

    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        let ttl = expires.div_euclid(1000) + 1;
        let table = self.db.table(FAILURES);
        let started = std::time::Instant::now();
        // A live count goes up by one; a missing or expired one starts at 1. Each write is
        // conditional on what it expects, so when another replica changes the item between the
        // two the first is tried again.
        loop {
            let more = Write::update(
                table.clone(),
                item([("key", s(key))]),
                "SET #count = #count + :one, #last = :now, #expires = :expires, #ttl = :ttl",
            )
            .when("#expires > :now")
            // DynamoDB reserves these names.
            .name("#count", "count")
            .name("#last", "last")
            .name("#expires", "expires")
            .name("#ttl", "ttl")
            .value(":one", n(1))
            .value(":now", n(now))
            .value(":expires", n(expires))
            .value(":ttl", n(ttl));
            if self.db.write(more).await? {
                return Ok(());
            }
            let first = Write::put(
                table.clone(),
                item([
                    ("key", s(key)),
                    ("count", n(1)),
                    ("last", n(now)),
                    ("expires", n(expires)),
                    ("ttl", n(ttl)),
                ]),
            )
            .when("attribute_not_exists(#key) OR #expires <= :now")
            .name("#key", "key")
            .name("#expires", "expires")
            .value(":now", n(now));
            if self.db.write(first).await? {
                return Ok(());
            }
            self.db.patience(started, "counting a failed sign-in")?;
        }
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let forget = Write::delete(self.db.table(FAILURES), item([("key", s(key))]));
        self.db.write(forget).await?;
        Ok(())
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
