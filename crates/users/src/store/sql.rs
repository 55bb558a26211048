//! The users service on SQLite and PostgreSQL: one store, its statements written once (see the
//! `sql` crate). The schemas differ in column types only.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use platform::Role;
use sql::{Conn, Db, Error, Row, SqlUnit, args};
use sqlite::{DbError, Options, outbox};

use super::{Account, Failures, StoreError, UserStore};
use crate::domain::unit::UnitOfWork;
use crate::domain::{User, rules};

const SQLITE_SCHEMA: &str = "
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

#[cfg(feature = "postgres")]
const PG_SCHEMA: &str = "
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

/// The users service's tables in a SQLite file, or in PostgreSQL (in the schema `users`).
pub struct SqlUserStore {
    db: Db,
}

impl SqlUserStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let options = Options {
            migrations: vec![SQLITE_SCHEMA, outbox::MIGRATION],
            readers: 2,
        };
        Ok(Self {
            db: Db::sqlite(path, options)?,
        })
    }

    /// Prepares the store without connecting; see [`postgres::Pg::connect_lazy`].
    #[cfg(feature = "postgres")]
    pub fn connect(url: &str) -> Result<Self, postgres::PgError> {
        let options = postgres::Options {
            schema: "users".into(),
            migrations: vec![PG_SCHEMA, postgres::outbox::MIGRATION],
            max_connections: 4,
        };
        Ok(Self {
            db: Db::postgres(url, options)?,
        })
    }

    /// Creates PostgreSQL's tables now rather than on first use.
    #[cfg(feature = "postgres")]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(self.db.migrate().await?)
    }
}

fn account_row(r: &Row<'_>) -> Result<Account, Error> {
    Ok(Account {
        user: User {
            id: r.text(0)?.into(),
            email: r.text(1)?,
            name: r.text(2)?,
            // Never a default: a damaged role must not become `customer`, nor anything `admin`.
            role: r.stored(3, "role", Role::parse)?,
        },
        password_hash: r.text(4)?,
    })
}

/// The account whose `column` is `value`.
async fn account(
    conn: &mut impl Conn,
    column: &str,
    value: &str,
) -> Result<Option<Account>, Error> {
    let sql = format!("SELECT id, email, name, role, password_hash FROM users WHERE {column} = $1");
    conn.fetch_optional(&sql, args![value], account_row).await
}

async fn failures(conn: &mut impl Conn, key: &str) -> Result<Option<Failures>, Error> {
    let sql = "SELECT count, last, expires FROM signin_failures WHERE key = $1";
    conn.fetch_optional(sql, args![key], |r| {
        Ok(Failures {
            count: r.int(0)?,
            last: r.i64(1)?,
            expires: r.i64(2)?,
        })
    })
    .await
}

impl<C: Conn> UnitOfWork for SqlUnit<C> {
    async fn insert_account(&mut self, account: &Account) -> Result<bool, Error> {
        let u = &account.user;
        let sql = "INSERT INTO users (id, email, name, role, password_hash)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING";
        let args = args![
            &u.id,
            &u.email,
            &u.name,
            u.role.as_str(),
            &account.password_hash
        ];
        Ok(self.conn.execute(sql, args).await? == 1)
    }

    async fn account(&mut self, email: &str) -> Result<Option<Account>, Error> {
        account(&mut self.conn, "email", email).await
    }

    async fn make_admin(&mut self, id: &str, password_hash: &str) -> Result<(), Error> {
        let sql = "UPDATE users SET role = 'admin', password_hash = $1 WHERE id = $2";
        self.conn.execute(sql, args![password_hash, id]).await?;
        Ok(())
    }

    async fn failures(&mut self, key: &str) -> Result<Option<Failures>, Error> {
        failures(&mut self.conn, key).await
    }

    /// Conditional on what was read, so that of two PostgreSQL replicas counting at once one
    /// writes and the other, waiting on the row meanwhile, finds it changed and counts again.
    /// (SQLite's writer makes one unit at a time: what was read is still there.)
    async fn put_failures(
        &mut self,
        key: &str,
        read: Option<&Failures>,
        f: &Failures,
    ) -> Result<bool, Error> {
        let written = match read {
            None => {
                let sql = "INSERT INTO signin_failures (key, count, last, expires)
                           VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING";
                let args = args![key, f.count, f.last, f.expires];
                self.conn.execute(sql, args).await?
            }
            Some(read) => {
                let sql = "UPDATE signin_failures SET count = $2, last = $3, expires = $4
                           WHERE key = $1 AND count = $5 AND last = $6";
                let args = args![key, f.count, f.last, f.expires, read.count, read.last];
                self.conn.execute(sql, args).await?
            }
        };
        Ok(written == 1)
    }
}

#[async_trait]
impl UserStore for SqlUserStore {
    async fn create(&self, account: Account) -> Result<bool, StoreError> {
        Ok(sql::write!(&self.db, (), |unit| rules::sign_up(
            unit, &account
        ))?)
    }

    async fn by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        let email = email.to_owned();
        Ok(sql::read!(&self.db, |conn| account(conn, "email", &email))?)
    }

    async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let id = id.to_owned();
        let found = sql::read!(&self.db, |conn| account(conn, "id", &id))?;
        Ok(found.map(|a| a.user))
    }

    async fn set_admin(&self, account: Account) -> Result<User, StoreError> {
        Ok(sql::write!(&self.db, (), |unit| rules::set_admin(
            unit, &account
        ))?)
    }

    async fn failures(&self, key: &str) -> Result<Option<Failures>, StoreError> {
        let key = key.to_owned();
        Ok(sql::read!(&self.db, |conn| failures(conn, &key))?)
    }

    async fn add_failure(&self, key: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        // On its own: the delete then holds no locks while the count is made.
        let expired = "DELETE FROM signin_failures WHERE expires <= $1";
        sql::write!(&self.db, (), |unit| unit.conn.execute(expired, args![now]))?;
        let key = key.to_owned();
        Ok(sql::write!(&self.db, (), |unit| rules::count_failure(
            unit, &key, now, expires
        ))?)
    }

    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        let (sql, key) = ("DELETE FROM signin_failures WHERE key = $1", key.to_owned());
        sql::write!(&self.db, (), |unit| unit.conn.execute(sql, args![&key]))?;
        Ok(())
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        self.db.outbox()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
