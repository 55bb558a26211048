use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bus::{SqliteUnit, run_now};
use platform::Role;
use sqlite::rusqlite::{Connection, OptionalExtension, Row, params};
use sqlite::{Db, DbError, Options, outbox};

use super::{Account, Failures, StoreError, UserStore};
use crate::domain::unit::UnitOfWork;
use crate::domain::{User, rules};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signin_failures (
    key     TEXT PRIMARY KEY,
    count   INTEGER NOT NULL,
    last    INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS signin_failures_expires ON signin_failures (expires);";

pub struct SqliteUserStore {
    db: Db,
}

impl SqliteUserStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![SCHEMA, outbox::MIGRATION],
                readers: 2,
            },
        )?;
        Ok(Self { db })
    }
}

fn account_row(r: &Row<'_>) -> sqlite::rusqlite::Result<Account> {
    Ok(Account {
        user: User {
            id: r.get(0)?,
            email: r.get(1)?,
            name: r.get(2)?,
            // Never a default: a damaged role must not become `customer`, nor anything `admin`.
            role: sqlite::stored(r, 3, "role", Role::parse)?,
        },
        password_hash: r.get(4)?,
    })
}

fn select(
    conn: &Connection,
    column: &str,
    value: &str,
) -> sqlite::rusqlite::Result<Option<Account>> {
    conn.prepare_cached(&format!(
        "SELECT id, email, name, role, password_hash FROM users WHERE {column} = ?1"
    ))?
    .query_row([value], account_row)
    .optional()
}

impl UnitOfWork for SqliteUnit<'_> {
    async fn insert_account(&mut self, account: &Account) -> Result<bool, DbError> {
        let u = &account.user;
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO users (id, email, name, role, password_hash) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (email) DO NOTHING",
            )?
            .execute(params![
                u.id,
                u.email,
                u.name,
                u.role.as_str(),
                account.password_hash
            ])?;
        Ok(inserted == 1)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, DbError> {
        Ok(select(self.conn, "email", email)?)
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), DbError> {
        self.conn
            .prepare_cached("UPDATE users SET role = 'admin', password_hash = ?1 WHERE id = ?2")?
            .execute(params![password_hash, id])?;
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, DbError> {
        Ok(select_failures(self.conn, key)?)
    }

    /// Whatever was `read`: the writer makes one unit at a time.
    async fn put_failures(
        &mut self,
        key: &str,
        _: Option<&Failures>,
        f: &Failures,
    ) -> Result<bool, DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO signin_failures (key, count, last, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     count = excluded.count, last = excluded.last, expires = excluded.expires",
            )?
            .execute(params![key, f.count, f.last, f.expires])?;
        Ok(true)
    }
}

fn select_failures(conn: &Connection, key: &str) -> sqlite::rusqlite::Result<Option<Failures>> {
    conn.prepare_cached("SELECT count, last, expires FROM signin_failures WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(Failures {
                count: r.get(0)?,
                last: r.get(1)?,
                expires: r.get(2)?,
            })
        })
        .optional()
}

#[async_trait]
impl UserStore for SqliteUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        Ok(self
            .db
            .write(move |c| run_now(rules::sign_up(&mut SqliteUnit::new(c), &account))?)
            .await?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let email = email.to_owned();
        Ok(self.db.read(move |c| select(c, "email", &email)).await?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .read(move |c| select(c, "id", &id))
            .await?
            .map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        Ok(self
            .db
            .write(move |c| run_now(rules::set_admin(&mut SqliteUnit::new(c), &account))?)
            .await?)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let key = key.to_owned();
        Ok(self.db.read(move |c| select_failures(c, &key)).await?)
    }

    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        let key = key.to_owned();
        Ok(self
            .db
            .write(move |c| {
                c.prepare_cached("DELETE FROM signin_failures WHERE expires <= ?1")?
                    .execute([now])?;
                let mut unit = SqliteUnit::new(c);
                run_now(rules::count_failure(&mut unit, &key, now, expires))?
            })
            .await?)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        Ok(self
            .db
            .write(move |c| {
                c.prepare_cached("DELETE FROM signin_failures WHERE key = ?1")?
                    .execute([key])?;
                Ok::<_, DbError>(())
            })
            .await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(bus::SqliteOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
