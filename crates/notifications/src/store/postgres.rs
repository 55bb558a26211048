use std::sync::Arc;

use async_trait::async_trait;
use bus::unit::Corrupt;
use chrono::DateTime;
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, Row};
use postgres::{Options, Pg, PgError, PgUnit, inbox};
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
    /// Woken after every commit that may have queued a mail; the sender waits on it.
    committed: Arc<Notify>,
}

impl PgNotificationStore {
    /// Prepares the store without connecting; see [`Pg::connect_lazy`].
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let pg = Pg::connect_lazy(
            url,
            Options {
                schema: "notifications".into(),
                migrations: vec![SCHEMA, inbox::MIGRATION],
                max_connections: 4,
            },
        )?;
        Ok(Self {
            pg,
            committed: Arc::new(Notify::new()),
        })
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

impl UnitOfWork for PgUnit<'_> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, PgError> {
        let row = sqlx::query("SELECT name, start_date FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.conn)
            .await?;
        let event = |r: PgRow| -> Result<EventInfo, sqlx::Error> {
            let starts = DateTime::from_timestamp(r.try_get("start_date")?, 0).unwrap_or_default();
            Ok(EventInfo {
                name: r.try_get("name")?,
                starts,
            })
        };
        Ok(row.map(event).transpose()?)
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO events (id, name, start_date) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&event.name)
        .bind(event.starts.timestamp())
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, PgError> {
        let row = sqlx::query("SELECT event_id, email, seats FROM bookings WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.conn)
            .await?;
        let booking = |r: PgRow| -> Result<KnownBooking, sqlx::Error> {
            let (event_id, email) = (r.try_get("event_id")?, r.try_get("email")?);
            let seats = postgres::int(&r, "seats")?;
            Ok(KnownBooking {
                id: id.to_owned(),
                event_id,
                email,
                seats,
            })
        };
        Ok(row.map(booking).transpose()?)
    }

    async fn learn_booking(&mut self, booking: &KnownBooking) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO bookings (id, event_id, email, seats) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(&booking.id)
        .bind(&booking.event_id)
        .bind(&booking.email)
        .bind(i64::from(booking.seats))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn queue_mail(&mut self, mail: &Mail, due: i64) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO mails (id, recipient, subject, text, html, next_attempt, trace)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&mail.id)
        .bind(&mail.to)
        .bind(&mail.subject)
        .bind(&mail.text)
        .bind(&mail.html)
        .bind(due)
        .bind(&mail.trace)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, PgError> {
        // SKIP LOCKED: a replica's sender claiming at the same moment takes other mails rather
        // than waiting for these and then finding them taken.
        let rows = sqlx::query(
            "SELECT id, recipient, subject, text, html, trace FROM mails
             WHERE status = 'pending' AND next_attempt <= $1
             ORDER BY next_attempt, seq LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.conn)
        .await?;
        Ok(rows.iter().map(mail_row).collect::<Result<_, _>>()?)
    }

    async fn take(&mut self, ids: &[String], now: i64, until: i64) -> Result<Vec<String>, PgError> {
        let taken = sqlx::query_scalar(
            "UPDATE mails SET next_attempt = $3
             WHERE id = ANY($1) AND status = 'pending' AND next_attempt <= $2 RETURNING id",
        )
        .bind(ids)
        .bind(now)
        .bind(until)
        .fetch_all(&mut *self.conn)
        .await?;
        Ok(taken)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, PgError> {
        // Locked: a sender recording the same mail at the same time waits, and counts after.
        let attempts: Option<i64> =
            sqlx::query_scalar("SELECT attempts FROM mails WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *self.conn)
                .await?;
        let count = |n| u32::try_from(n).map_err(|_| Corrupt(format!("{n} attempts")));
        Ok(attempts.map(count).transpose()?)
    }

    async fn record_attempt(&mut self, id: &str, attempt: &Attempt<'_>) -> Result<(), PgError> {
        sqlx::query(
            "UPDATE mails SET status = $2, attempts = $3, next_attempt = $4,
                 last_error = COALESCE($5, last_error)
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempt.status.as_str())
        .bind(i64::from(attempt.counted) + 1)
        .bind(attempt.next_attempt)
        .bind(attempt.error)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
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
        let since = sqlx::query_scalar("SELECT at FROM mail_since")
            .fetch_one(&mut *tx)
            .await
            .map_err(PgError::from)?;
        let mut mailer = Mailer {
            links,
            since,
            now: now(),
        };
        let mut unit = PgUnit::new(&mut tx, ());
        let outcomes = bus::apply_once(&mut unit, &batch, &mut mailer).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        self.committed.notify_waiters();
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
        let query = sqlx::query(
            "SELECT COUNT(*) AS depth, MIN(next_attempt) AS first_due FROM mails
             WHERE status = 'pending'",
        );
        let queue = self.pg.fetch_optional(query, |row| {
            Ok(MailQueue {
                depth: postgres::int(row, "depth")?,
                first_due: row
                    .try_get::<Option<i64>, _>("first_due")?
                    .and_then(DateTime::from_timestamp_millis),
            })
        });
        Ok(queue.await?.unwrap_or_default())
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        let query = sqlx::query(
            "SELECT id, recipient, subject, text, html, trace, status, attempts FROM mails ORDER BY seq",
        );
        Ok(self
            .pg
            .fetch_all(query, |r| {
                Ok(StoredMail {
                    mail: mail_row(r)?,
                    status: postgres::stored(r, "status", "mail status", MailStatus::parse)?,
                    attempts: postgres::int(r, "attempts")?,
                })
            })
            .await?)
    }

    fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}
