use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, PgConnection, Row};
use postgres::{Options, Pg, PgError, PgQuery, PgUnit, inbox};
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, NotificationStore, StoreError, StoredMail, now};
use crate::domain::rules::{self, Command, Mailer};
use crate::domain::unit::{Attempt, KnownBooking, UnitOfWork};
use crate::domain::{BookingLinks, EventInfo, Mail};

/// The same tables as in SQLite (see `sqlite.rs` for what each holds).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    start_date BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    id       TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    email    TEXT NOT NULL,
    seats    BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS mails (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    text         TEXT NOT NULL,
    html         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS mails_due ON mails (status, next_attempt);
CREATE TABLE IF NOT EXISTS mail_since (at BIGINT NOT NULL);
INSERT INTO mail_since (at) SELECT extract(epoch FROM now())::BIGINT - 60
    WHERE NOT EXISTS (SELECT 1 FROM mail_since);
ALTER TABLE mails ADD COLUMN IF NOT EXISTS trace TEXT;";

/// The notifications service's tables in PostgreSQL, in the schema `notifications`.
pub struct PgNotificationStore {
    pg: Pg,
}

impl PgNotificationStore {
    /// Prepares the store without connecting; see [`Pg::connect_lazy`].
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let options = Options {
            schema: "notifications".into(),
            migrations: vec![SCHEMA, inbox::MIGRATION],
            max_connections: 4,
        };
        let pg = Pg::connect_lazy(url, options)?;
        Ok(Self { pg })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.pg.migrate().await
    }
}

fn mail_row(r: &PgRow) -> Result<Mail, sqlx::Error> {
    Ok(Mail {
        id: r.try_get("id")?,
        to: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        text: r.try_get("text")?,
        html: r.try_get("html")?,
        trace: r.try_get("trace")?,
    })
}

/// Runs `query` in the unit's transaction: the rows it changed.
async fn exec(conn: &mut PgConnection, query: PgQuery<'_>) -> Result<u64, PgError> {
    Ok(query.execute(conn).await?.rows_affected())
}

/// The row `query` finds in the unit's transaction, if any.
async fn find(conn: &mut PgConnection, query: PgQuery<'_>) -> Result<Option<PgRow>, PgError> {
    Ok(query.fetch_optional(conn).await?)
}

impl UnitOfWork for PgUnit<'_> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, PgError> {
        let sql = "SELECT name, start_date FROM events WHERE id = $1";
        let Some(r) = find(self.conn, sqlx::query(sql).bind(id)).await? else {
            return Ok(None);
        };
        Ok(Some(EventInfo::stored(
            r.try_get("name")?,
            r.try_get("start_date")?,
        )))
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), PgError> {
        let sql =
            "INSERT INTO events (id, name, start_date) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        let (name, starts) = (&event.name, event.starts.timestamp());
        exec(self.conn, sqlx::query(sql).bind(id).bind(name).bind(starts))
            .await
            .map(drop)
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, PgError> {
        let sql = "SELECT id, event_id, email, seats FROM bookings WHERE id = $1";
        let Some(r) = find(self.conn, sqlx::query(sql).bind(id)).await? else {
            return Ok(None);
        };
        let (id, event_id, email) = (
            r.try_get("id")?,
            r.try_get("event_id")?,
            r.try_get("email")?,
        );
        let seats = postgres::int(&r, "seats")?;
        Ok(Some(KnownBooking {
            id,
            event_id,
            email,
            seats,
        }))
    }

    async fn learn_booking(&mut self, b: &KnownBooking) -> Result<(), PgError> {
        let sql = "INSERT INTO bookings (id, event_id, email, seats) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING";
        let query = sqlx::query(sql)
            .bind(&b.id)
            .bind(&b.event_id)
            .bind(&b.email);
        exec(self.conn, query.bind(i64::from(b.seats)))
            .await
            .map(drop)
    }

    async fn queue_mail(&mut self, m: &Mail, due: i64) -> Result<(), PgError> {
        let sql = "INSERT INTO mails (id, recipient, subject, text, html, next_attempt, trace)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
        let query = sqlx::query(sql).bind(&m.id).bind(&m.to).bind(&m.subject);
        let query = query.bind(&m.text).bind(&m.html).bind(due).bind(&m.trace);
        exec(self.conn, query).await.map(drop)
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, PgError> {
        // SKIP LOCKED: a replica's sender claiming at the same moment takes other mails rather
        // than waiting for these and then finding them taken.
        let sql = "SELECT id, recipient, subject, text, html, trace FROM mails
             WHERE status = 'pending' AND next_attempt <= $1
             ORDER BY next_attempt, seq LIMIT $2 FOR UPDATE SKIP LOCKED";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self.conn);
        Ok(rows.await?.iter().map(mail_row).collect::<Result<_, _>>()?)
    }

    async fn take(&mut self, ids: &[String], now: i64, until: i64) -> Result<Vec<String>, PgError> {
        let sql = "UPDATE mails SET next_attempt = $3
             WHERE id = ANY($1) AND status = 'pending' AND next_attempt <= $2 RETURNING id";
        let query = sqlx::query_scalar(sql).bind(ids).bind(now).bind(until);
        Ok(query.fetch_all(&mut *self.conn).await?)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, PgError> {
        // Locked: a sender recording the same mail at the same time waits, and counts after.
        let sql = "SELECT attempts FROM mails WHERE id = $1 FOR UPDATE";
        let found = find(self.conn, sqlx::query(sql).bind(id)).await?;
        Ok(found.map(|r| postgres::int(&r, "attempts")).transpose()?)
    }

    async fn record_attempt(&mut self, id: &str, a: &Attempt<'_>) -> Result<(), PgError> {
        let sql = "UPDATE mails SET status = $2, attempts = $3, next_attempt = $4,
                 last_error = COALESCE($5, last_error) WHERE id = $1";
        let attempts = i64::from(a.attempts());
        let query = sqlx::query(sql)
            .bind(id)
            .bind(a.status.as_str())
            .bind(attempts);
        exec(self.conn, query.bind(a.next_attempt).bind(a.error))
            .await
            .map(drop)
    }
}

#[async_trait]
impl NotificationStore for PgNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let since = sqlx::query_scalar("SELECT at FROM mail_since").fetch_one(&mut *tx);
        let (since, now) = (since.await.map_err(PgError::from)?, now());
        let mut unit = PgUnit::new(&mut tx, ());
        let outcomes =
            bus::apply_once(&mut unit, &batch, &mut Mailer { links, since, now }).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        self.committed().notify_waiters();
        Ok(outcomes)
    }

    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        let mails = rules::run(&mut unit, &command, now()).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(mails)
    }

    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        let sql = "SELECT COUNT(*) AS depth, MIN(next_attempt) AS first_due FROM mails
             WHERE status = 'pending'";
        let queue = self.pg.fetch_optional(sqlx::query(sql), |row| {
            let first_due: Option<i64> = row.try_get("first_due")?;
            let first_due = first_due.and_then(DateTime::from_timestamp_millis);
            Ok(MailQueue {
                depth: postgres::int(row, "depth")?,
                first_due,
            })
        });
        Ok(queue.await?.unwrap_or_default())
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        let sql = "SELECT id, recipient, subject, text, html, trace, status, attempts
             FROM mails ORDER BY seq";
        let stored = |r: &PgRow| {
            let status = postgres::stored(r, "status", "mail status", MailStatus::parse)?;
            let (mail, attempts) = (mail_row(r)?, postgres::int(r, "attempts")?);
            Ok(StoredMail {
                mail,
                status,
                attempts,
            })
        };
        Ok(self.pg.fetch_all(sqlx::query(sql), stored).await?)
    }

    /// The database's own, which only commits that emit events wake otherwise: this
    /// service's rules emit none.
    fn committed(&self) -> Arc<Notify> {
        self.pg.committed()
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}
