use std::sync::Arc;

use async_trait::async_trait;
use mongo::bson::{Document, doc};
use mongo::{Collection, Mongo, MongoError, MongoUnit, Options};
use platform::Role;
use serde::Deserialize;

use super::{Account, Failures, StoreError, UserStore};
use crate::domain::unit::UnitOfWork;
use crate::domain::{User, rules};

/// Accounts by id (`_id`), unique by e-mail.
const USERS: &str = "users";
/// Failed sign-ins by key (`_id`): `count`, `last`, `expires` (Unix ms).
const FAILURES: &str = "signin_failures";

#[derive(Deserialize)]
struct FailuresDoc {
    count: i64,
    last: i64,
    expires: i64,
}

impl From<FailuresDoc> for Failures {
    fn from(d: FailuresDoc) -> Failures {
        Failures {
            count: u32::try_from(d.count).unwrap_or(u32::MAX),
            last: d.last,
            expires: d.expires,
        }
    }
}

#[derive(Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    email: String,
    name: String,
    role: String,
    password_hash: String,
}

impl TryFrom<UserDoc> for Account {
    type Error = MongoError;

    fn try_from(d: UserDoc) -> Result<Account, MongoError> {
        Ok(Account {
            user: User {
                id: d.id.into(),
                email: d.email,
                name: d.name,
                role: platform::error::stored("role", &d.role, Role::parse)?,
            },
            password_hash: d.password_hash,
        })
    }
}

/// The users service's collection in MongoDB, in the database `<database>_users`.
pub struct MongoUserStore {
    mongo: Mongo,
}

impl MongoUserStore {
    /// Prepares the store without connecting; see [`Mongo::open`].
    pub fn connect(url: &str) -> Result<Self, MongoError> {
        let mongo = Mongo::open(
            url,
            Options {
                service: "users",
                collections: vec![
                    Collection::new(USERS).index(doc! {"email": 1}, true),
                    Collection::new(FAILURES).index(doc! {"expires": 1}, false),
                ],
                seeds: Vec::new(),
            },
        )?;
        Ok(Self { mongo })
    }

    /// Creates the collection and its index now rather than on first use.
    pub async fn migrate(&self) -> Result<(), MongoError> {
        self.mongo.migrate().await
    }
}

impl UnitOfWork for MongoUnit<'_> {
    /// Two accounts with one address created at once conflict on the unique index, and the
    /// one retried finds the other.
    async fn insert_account(&mut self, account: &Account) -> Result<bool, MongoError> {
        let u = &account.user;
        if self.account(&u.email).await?.is_some() {
            return Ok(false);
        }
        let document = doc! {
            "_id": u.id.as_str(),
            "email": &u.email,
            "name": &u.name,
            "role": u.role.as_str(),
            "password_hash": &account.password_hash,
        };
        self.tx.insert(USERS, document).await?;
        Ok(true)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, MongoError> {
        let found: Option<UserDoc> = self.tx.find_one(USERS, doc! {"email": email}).await?;
        found.map(Account::try_from).transpose()
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), MongoError> {
        let admin = doc! {"$set": {"role": Role::Admin.as_str(), "password_hash": password_hash}};
        self.tx
            .update_one(USERS, doc! {"_id": id}, admin, false)
            .await?;
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, MongoError> {
        let found: Option<FailuresDoc> = self.tx.find_one(FAILURES, doc! {"_id": key}).await?;
        Ok(found.map(Failures::from))
    }

    /// Whatever was `read`: two replicas counting the same key at once conflict, and the
    /// transaction of one of them is made again on the other's count.
    async fn put_failures(
        &mut self,
        key: &str,
        _: Option<&Failures>,
        f: &Failures,
    ) -> Result<bool, MongoError> {
        let counted =
            doc! {"$set": {"count": i64::from(f.count), "last": f.last, "expires": f.expires}};
        self.tx
            .update_one(FAILURES, doc! {"_id": key}, counted, true)
            .await?;
        Ok(true)
    }
}

#[async_trait]
impl UserStore for MongoUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        let sign_up =
            (self.mongo).transaction(&account, |unit, a| Box::pin(rules::sign_up(unit, a)));
        Ok(sign_up.await?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let found: Option<UserDoc> = self
            .mongo
            .find_one(USERS, doc! {"email": email}, doc! {})
            .await?;
        Ok(found.map(Account::try_from).transpose()?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let found: Option<UserDoc> = self
            .mongo
            .find_one(USERS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(Account::try_from).transpose()?.map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        let set = (self.mongo).transaction(&account, |unit, a| Box::pin(rules::set_admin(unit, a)));
        Ok(set.await?)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let found: Option<FailuresDoc> = self
            .mongo
            .find_one(FAILURES, doc! {"_id": key}, doc! {})
            .await?;
        Ok(found.map(Failures::from))
    }

    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        let failure = (key.to_owned(), now, expires);
        let count = self.mongo.transaction(&failure, |unit, f| {
            Box::pin(rules::count_failure(unit, &f.0, f.1, f.2))
        });
        count.await?;
        // Outside the transaction: pruning must not make counting conflict.
        let pruned = async {
            self.mongo
                .database()
                .await?
                .collection::<Document>(FAILURES)
                .delete_many(doc! {"expires": {"$lte": now}})
                .await?;
            Ok::<_, MongoError>(())
        };
        Ok(pruned.await?)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let cleared = async {
            self.mongo
                .database()
                .await?
                .collection::<Document>(FAILURES)
                .delete_one(doc! {"_id": key})
                .await?;
            Ok::<_, MongoError>(())
        };
        Ok(cleared.await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(mongo::MongoOutbox(self.mongo.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
