use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, PgConnection, Row};
use postgres::{Options, Pg, PgError, inbox};
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, Mailing, NotificationStore, StoreError, StoredMail};
use crate::domain::{BookingLinks, EventInfo, Fact, Mail};

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

async fn insert_mail(conn: &mut PgConnection, mail: &Mail) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mails (id, recipient, subject, text, html, next_attempt, trace)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&mail.id)
    .bind(&mail.to)
    .bind(&mail.subject)
    .bind(&mail.text)
    .bind(&mail.html)
    // Due from now: mails go out in the order they became due (see the SQLite store).
    .bind(Utc::now().timestamp_millis())
    .bind(&mail.trace)
    .execute(conn)
    .await?;
    Ok(())
}

async fn event_info(conn: &mut PgConnection, id: &str) -> Result<Option<EventInfo>, sqlx::Error> {
    let row = sqlx::query("SELECT name, start_date FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(EventInfo {
            name: r.try_get("name")?,
            starts: DateTime::from_timestamp(r.try_get("start_date")?, 0).unwrap_or_default(),
        })
    })
    .transpose()
}

/// Applies one event, mailing its fact if `mail`; mirrors `sqlite.rs`.
async fn apply_one(
    conn: &mut PgConnection,
    event: &DomainEvent,
    mailing: Option<Mailing>,
) -> Result<bus::Outcome, sqlx::Error> {
    let fact = match event {
        DomainEvent::EventCreated(created) => {
            sqlx::query(
                "INSERT INTO events (id, name, start_date) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&created.id)
            .bind(&created.name)
            .bind(created.start_date.timestamp())
            .execute(conn)
            .await?;
            return Ok(bus::Outcome::Applied);
        }
        DomainEvent::EventBooked(booked) => {
            let Some(event) = event_info(conn, &booked.event_id).await? else {
                return Ok(bus::Outcome::Retry(format!(
                    "event {} is not known yet",
                    booked.event_id
                )));
            };
            sqlx::query(
                "INSERT INTO bookings (id, event_id, email, seats) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&booked.booking_id)
            .bind(&booked.event_id)
            .bind(&booked.email)
            .bind(i64::from(booked.seats))
            .execute(&mut *conn)
            .await?;
            Fact::Booked {
                booking_id: booked.booking_id.clone(),
                event,
                seats: booked.seats,
                email: booked.email.clone(),
                guest: booked.user_id.is_empty(),
            }
        }
        DomainEvent::BookingCancelled(cancelled) => {
            let booking = sqlx::query("SELECT event_id, email FROM bookings WHERE id = $1")
                .bind(&cancelled.booking_id)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(booking) = booking else {
                return Ok(bus::Outcome::Retry(format!(
                    "booking {} is not known yet",
                    cancelled.booking_id
                )));
            };
            let (event_id, email): (String, String) =
                (booking.try_get("event_id")?, booking.try_get("email")?);
            let Some(event) = event_info(conn, &event_id).await? else {
                return Ok(bus::Outcome::Retry(format!(
                    "event {event_id} is not known yet"
                )));
            };
            Fact::cancellation(
                cancelled.booking_id.clone(),
                event,
                cancelled.seats,
                email,
                cancelled.reason,
            )
        }
        DomainEvent::UserCreated(user) => Fact::Welcome {
            user_id: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
        },
        DomainEvent::LocationCreated(_) | DomainEvent::EventCancelled(_) => {
            return Ok(bus::Outcome::Applied);
        }
    };
    if let Some(mail) = mailing.and_then(|mailing| mailing.mail(&fact)) {
        insert_mail(conn, &mail).await?;
    }
    Ok(bus::Outcome::Applied)
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

#[async_trait]
impl NotificationStore for PgNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let since: i64 = sqlx::query_scalar("SELECT at FROM mail_since")
            .fetch_one(&mut *tx)
            .await
            .map_err(PgError::from)?;
        let (outcomes, caused) = inbox::apply_once(&mut tx, &batch, |c, received| {
            let mailing = received.mailing(since, links);
            let event = &received.event;
            Box::pin(async move { Ok((apply_one(c, event, mailing).await?, Vec::new())) })
        })
        .await
        .map_err(PgError::from)?;
        self.pg.commit(tx, &caused).await?;
        self.committed.notify_waiters();
        Ok(outcomes)
    }

    async fn queue(&self, mail: Mail) -> Result<(), StoreError> {
        let mut tx = self.pg.begin().await?;
        insert_mail(&mut tx, &mail).await.map_err(PgError::from)?;
        self.pg.commit(tx, &[]).await?;
        self.committed.notify_waiters();
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError> {
        let now = Utc::now().timestamp_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        // SKIP LOCKED: a replica's sender claiming at the same moment takes other mails rather
        // than waiting for these and then finding them taken.
        let query = sqlx::query(
            "WITH due AS (
                 SELECT id, next_attempt, seq FROM mails
                 WHERE status = 'pending' AND next_attempt <= $1
                 ORDER BY next_attempt, seq LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE mails m SET next_attempt = $3 FROM due WHERE m.id = due.id
             RETURNING m.id, m.recipient, m.subject, m.text, m.html, m.trace,
                       due.next_attempt AS was_due, due.seq",
        )
        .bind(now)
        .bind(limit as i64)
        .bind(until);
        let mut claimed = self
            .pg
            .fetch_all(query, |r| {
                let order: (i64, i64) = (r.try_get("was_due")?, r.try_get("seq")?);
                Ok((order, mail_row(r)?))
            })
            .await?;
        // RETURNING keeps no order.
        claimed.sort_by_key(|(order, _)| *order);
        Ok(claimed.into_iter().map(|(_, mail)| mail).collect())
    }

    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE mails SET status = 'sent', attempts = attempts + 1 WHERE id = ANY($1)",
        )
        .bind(ids);
        query
            .execute(self.pg.pool().await?)
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError> {
        // 2 s, 4 s, 8 s … 5 minutes after the attempt, as in SQLite.
        let query = sqlx::query(
            "UPDATE mails SET attempts = attempts + 1, last_error = $2,
                 status = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,
                 next_attempt = $4 + 1000 * LEAST(300, power(2, LEAST(attempts + 1, 9)))::BIGINT
             WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(permanent)
        .bind(Utc::now().timestamp_millis());
        query
            .execute(self.pg.pool().await?)
            .await
            .map_err(PgError::from)?;
        Ok(())
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
