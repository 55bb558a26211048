use std::sync::Arc;

use async_trait::async_trait;
use dynamo::item::{Item, get_n, get_s, item, n, s};
use dynamo::{Dynamo, DynamoError, DynamoUnit, KeyKind, Options, Table, Write, outbox};
use platform::Role;

use super::{Account, Failures, StoreError, UserStore};
use crate::domain::unit::UnitOfWork;
use crate::domain::{User, rules};

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
}

fn account(i: &Item) -> Result<Account, DynamoError> {
    Ok(Account {
        user: User {
            id: get_s(i, "id")?.into(),
            email: get_s(i, "email")?,
            name: get_s(i, "name")?,
            role: platform::error::stored("role", &get_s(i, "role")?, Role::parse)?,
        },
        password_hash: get_s(i, "password_hash")?,
    })
}

impl UnitOfWork for DynamoUnit<'_> {
    /// The address's item, put on condition that none exists, keeps addresses unique: of two
    /// sign-ups at once, the one refused is made again and finds the address taken.
    async fn insert_account(&mut self, account: &Account) -> Result<bool, DynamoError> {
        let u = &account.user;
        if self.db.get(EMAILS, email_key(&u.email)).await?.is_some() {
            return Ok(false);
        }
        let user = item([
            ("id", s(&u.id)),
            ("email", s(&u.email)),
            ("name", s(&u.name)),
            ("role", s(u.role.as_str())),
            ("password_hash", s(&account.password_hash)),
        ]);
        let owner = item([("email", s(&u.email)), ("id", s(&u.id))]);
        self.writes.extend([
            Write::put(self.db.table(EMAILS), owner).when("attribute_not_exists(email)"),
            Write::put(self.db.table(USERS), user).when("attribute_not_exists(id)"),
        ]);
        Ok(true)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, DynamoError> {
        let Some(owner) = self.db.get(EMAILS, email_key(email)).await? else {
            return Ok(None);
        };
        account_by_id(self.db, &get_s(&owner, "id")?).await
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), DynamoError> {
        let promote = Write::update(
            self.db.table(USERS),
            item([("id", s(id))]),
            "SET #role = :admin, password_hash = :hash",
        )
        .when("attribute_exists(id)")
        .name("#role", "role")
        .value(":admin", s(Role::Admin.as_str()))
        .value(":hash", s(password_hash));
        self.writes.push(promote);
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, DynamoError> {
        let Some(found) = self.db.get(FAILURES, item([("key", s(key))])).await? else {
            return Ok(None);
        };
        Ok(Some(Failures {
            count: u32::try_from(get_n::<u64>(&found, "count")?).unwrap_or(u32::MAX),
            last: get_n(&found, "last")?,
            expires: get_n(&found, "expires")?,
        }))
    }

    /// On condition that the count is still what was `read` when this unit commits.
    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        f: &Failures,
    ) -> Result<bool, DynamoError> {
        let counted = item([
            ("key", s(key)),
            ("count", n(f.count)),
            ("last", n(f.last)),
            ("expires", n(f.expires)),
            ("ttl", n(f.expires.div_euclid(1000) + 1)),
        ]);
        // DynamoDB reserves these names.
        let put = Write::put(self.db.table(FAILURES), counted).name("#key", "key");
        self.writes.push(match read {
            None => put.when("attribute_not_exists(#key)"),
            Some(read) => put
                .when("attribute_exists(#key) AND #count = :count AND #last = :last")
                .name("#count", "count")
                .name("#last", "last")
                .value(":count", n(read.count))
                .value(":last", n(read.last)),
        });
        Ok(true)
    }
}

fn email_key(email: &str) -> Item {
    item([("email", s(email))])
}

async fn account_by_id(db: &Dynamo, id: &str) -> Result<Option<Account>, DynamoError> {
    let found = db.get(USERS, item([("id", s(id))])).await?;
    found.as_ref().map(account).transpose()
}

#[async_trait]
impl UserStore for DynamoUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        let sign_up = dynamo::until_committed(&self.db, "signing up", &account, |unit, account| {
            Box::pin(rules::sign_up(unit, account))
        });
        Ok(sign_up.await?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        Ok(DynamoUnit::new(&self.db, ()).account(email).await?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(account_by_id(&self.db, id).await?.map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        let set =
            dynamo::until_committed(&self.db, "making an admin", &account, |unit, account| {
                Box::pin(rules::set_admin(unit, account))
            });
        Ok(set.await?)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        Ok(DynamoUnit::new(&self.db, ()).failures(key).await?)
    }

    /// Counts expired are deleted by the table's time to live.
    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        let failure = (key.to_owned(), now, expires);
        let count = dynamo::until_committed(
            &self.db,
            "counting a failed sign-in",
            &failure,
            |unit, f| Box::pin(rules::count_failure(unit, &f.0, f.1, f.2)),
        );
        Ok(count.await?)
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
