use std::sync::Arc;

use async_trait::async_trait;
use platform::Role;
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, Row};
use postgres::{Options, Pg, PgError, PgUnit, outbox};

use super::{Account, Failures, StoreError, UserStore};
use crate::domain::unit::UnitOfWork;
use crate::domain::{User, rules};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signin_failures (
    key     TEXT PRIMARY KEY,
    count   BIGINT NOT NULL,
    last    BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS signin_failures_expires ON signin_failures (expires);";

const SELECT: &str = "SELECT id, email, name, role, password_hash FROM users";

/// The users service's tables in PostgreSQL, in the schema `users`.
pub struct PgUserStore {
    pg: Pg,
}

impl PgUserStore {
    /// Prepares the store without connecting; see [`Pg::connect_lazy`].
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let pg = Pg::connect_lazy(
            url,
            Options {
                schema: "users".into(),
                migrations: vec![SCHEMA, outbox::MIGRATION],
                max_connections: 4,
            },
        )?;
        Ok(Self { pg })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.pg.migrate().await
    }
}

fn account_row(r: &PgRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        user: User {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            role: postgres::stored(r, "role", "role", Role::parse)?,
        },
        password_hash: r.try_get("password_hash")?,
    })
}

impl UnitOfWork for PgUnit<'_> {
    async fn insert_account(&mut self, account: &Account) -> Result<bool, PgError> {
        let u = &account.user;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(&account.password_hash)
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, PgError> {
        let row = postgres::query(format!("{SELECT} WHERE email = $1"))
            .bind(email)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.as_ref().map(account_row).transpose()?)
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), PgError> {
        sqlx::query("UPDATE users SET role = 'admin', password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, PgError> {
        let row = sqlx::query("SELECT count, last, expires FROM signin_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *self.conn)
            .await?;
        Ok(row.as_ref().map(failures_row).transpose()?)
    }

    /// Conditional on what was read, so that of two replicas counting at once one writes and
    /// the other, waiting on the row meanwhile, finds it changed and counts again.
    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        f: &Failures,
    ) -> Result<bool, PgError> {
        let sql = match read {
            None => {
                "INSERT INTO signin_failures (key, count, last, expires) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO NOTHING"
            }
            Some(_) => {
                "UPDATE signin_failures SET count = $2, last = $3, expires = $4
                 WHERE key = $1 AND count = $5 AND last = $6"
            }
        };
        let query = sqlx::query(sql)
            .bind(key)
            .bind(i64::from(f.count))
            .bind(f.last)
            .bind(f.expires);
        let query = match read {
            None => query,
            Some(read) => query.bind(i64::from(read.count)).bind(read.last),
        };
        Ok(query.execute(&mut *self.conn).await?.rows_affected() == 1)
    }
}

fn failures_row(r: &PgRow) -> Result<Failures, sqlx::Error> {
    Ok(Failures {
        count: postgres::int(r, "count")?,
        last: r.try_get("last")?,
        expires: r.try_get("expires")?,
    })
}

#[async_trait]
impl UserStore for PgUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        let created = rules::sign_up(&mut unit, &account).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(created)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let query = format!("{SELECT} WHERE email = $1");
        Ok(self
            .pg
            .fetch_optional(postgres::query(query).bind(email), account_row)
            .await?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let query = format!("{SELECT} WHERE id = $1");
        let account = self
            .pg
            .fetch_optional(postgres::query(query).bind(id), account_row)
            .await?;
        Ok(account.map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        let admin = rules::set_admin(&mut unit, &account).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(admin)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let query = "SELECT count, last, expires FROM signin_failures WHERE key = $1";
        let query = postgres::query(query.to_owned()).bind(key);
        Ok(self.pg.fetch_optional(query, failures_row).await?)
    }

    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        // On its own: the delete then holds no locks while the count is made.
        sqlx::query("DELETE FROM signin_failures WHERE expires <= $1")
            .bind(now)
            .execute(self.pg.pool().await?)
            .await
            .map_err(PgError::from)?;
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        rules::count_failure(&mut unit, key, now, expires).await?;
        Ok(self.pg.commit(tx, &[]).await?)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let pool = self.pg.pool().await?;
        sqlx::query("DELETE FROM signin_failures WHERE key = $1")
            .bind(key)
            .execute(pool)
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(postgres::PgOutbox::new(self.pg.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}
