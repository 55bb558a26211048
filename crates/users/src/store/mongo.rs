use std::sync::Arc;

use async_trait::async_trait;
use contracts::Envelope;
use mongo::bson::doc;
use mongo::{Collection, Mongo, MongoError, Options, Tx};
use platform::Role;
use serde::Deserialize;

use super::{Account, StoreError, UserStore, user_created};
use crate::domain::User;

/// Accounts by id (`_id`), unique by e-mail.
const USERS: &str = "users";

#[derive(Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    id: String,
    email: String,
    name: String,
    role: String,
    password_hash: String,
}

impl From<UserDoc> for Account {
    fn from(d: UserDoc) -> Account {
        Account {
            user: User {
                id: d.id,
                email: d.email,
                name: d.name,
                role: Role::parse(&d.role).unwrap_or(Role::Customer),
            },
            password_hash: d.password_hash,
        }
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
                collections: vec![Collection::new(USERS).index(doc! {"email": 1}, true)],
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

/// Inserts the account unless its e-mail is taken; its `userCreated` if it did. Two accounts
/// with one e-mail created at once conflict on the unique index, and the one retried finds the
/// other.
async fn insert(tx: &mut Tx, account: &Account) -> Result<Option<Envelope>, MongoError> {
    let u = &account.user;
    let taken: Option<UserDoc> = tx.find_one(USERS, doc! {"email": &u.email}).await?;
    if taken.is_some() {
        return Ok(None);
    }
    let document = doc! {
        "_id": &u.id,
        "email": &u.email,
        "name": &u.name,
        "role": u.role.as_str(),
        "password_hash": &account.password_hash,
    };
    tx.insert(USERS, document).await?;
    Ok(Some(user_created(u)))
}

/// See [`UserStore::set_admin`].
async fn set_admin(tx: &mut Tx, account: &Account) -> Result<(User, Vec<Envelope>), MongoError> {
    let created = insert(tx, account).await?;
    if created.is_none() {
        tx.update_one(
            USERS,
            doc! {"email": &account.user.email},
            doc! {"$set": {"role": Role::Admin.as_str(), "password_hash": &account.password_hash}},
            false,
        )
        .await?;
    }
    let admin: Option<UserDoc> = tx
        .find_one(USERS, doc! {"email": &account.user.email})
        .await?;
    let admin = admin.ok_or_else(|| {
        MongoError::Invalid(format!("the account {} vanished", account.user.email))
    })?;
    Ok((Account::from(admin).user, Vec::from_iter(created)))
}

#[async_trait]
impl UserStore for MongoUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        Ok(self
            .mongo
            .transaction(&account, |tx, account| {
                Box::pin(async move {
                    let created = insert(tx, account).await?;
                    Ok((created.is_some(), Vec::from_iter(created)))
                })
            })
            .await?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let found: Option<UserDoc> = self
            .mongo
            .find_one(USERS, doc! {"email": email}, doc! {})
            .await?;
        Ok(found.map(Account::from))
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let found: Option<UserDoc> = self
            .mongo
            .find_one(USERS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(|d| Account::from(d).user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        Ok(self
            .mongo
            .transaction(&account, |tx, account| Box::pin(set_admin(tx, account)))
            .await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(mongo::MongoOutbox(self.mongo.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
