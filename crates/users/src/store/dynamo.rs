use std::sync::Arc;

use async_trait::async_trait;
use dynamo::item::{Item, get_s, item, s};
use dynamo::{Commit, Dynamo, DynamoError, KeyKind, Options, Table, Write, outbox};
use platform::Role;

use super::{Account, StoreError, UserStore, user_created};
use crate::domain::User;

const USERS: &str = "users";
/// One item per e-mail address, naming its user: put on condition that none exists, in the
/// transaction that puts the user, it is what keeps addresses unique.
const EMAILS: &str = "emails";

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
            // Only this module writes the attribute.
            role: Role::parse(&get_s(i, "role")?).unwrap_or(Role::Customer),
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

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
