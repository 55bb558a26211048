use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use sqlite::rusqlite::{Connection, OptionalExtension, params};
use sqlite::{Db, DbError, Options, inbox};
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, Mailing, NotificationStore, StoreError, StoredMail};
use crate::domain::{BookingLinks, EventInfo, Fact, Mail};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    start_date INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    id       TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    email    TEXT NOT NULL,
    seats    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mails (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    text         TEXT NOT NULL,
    html         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL DEFAULT 0, -- Unix milliseconds
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS mails_due ON mails (status, next_attempt);
-- When this database was first opened: facts from before are learnt, not mailed.
CREATE TABLE IF NOT EXISTS mail_since (at INTEGER NOT NULL);
INSERT INTO mail_since (at) SELECT CAST(strftime('%s', 'now') AS INTEGER) - 60
    WHERE NOT EXISTS (SELECT 1 FROM mail_since);";

/// The trace a mail's sending continues (added after the first release).
const MAIL_TRACE: &str = "ALTER TABLE mails ADD COLUMN trace TEXT";

pub struct SqliteNotificationStore {
    db: Db,
}

impl SqliteNotificationStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![SCHEMA, MAIL_TRACE, inbox::MIGRATION],
                ..Options::default()
            },
        )?;
        Ok(Self { db })
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Queues `mail` unless a mail with its id is queued already (the same fact told twice). It is
/// due from now, so that mails go out in the order they became due, retries among them.
fn insert_mail(conn: &Connection, mail: &Mail) -> sqlite::rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO mails (id, recipient, subject, text, html, next_attempt, trace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        mail.id,
        mail.to,
        mail.subject,
        mail.text,
        mail.html,
        now_ms(),
        mail.trace
    ])?;
    Ok(())
}

/// The oldest mails due, in the order of the `mails_due` index (status, due time, then `seq`,
/// the rowid every index ends with), so that taking a batch reads just that batch. Ordered by
/// `seq` alone, SQLite sorted every pending mail to take the first few: after a flash sale, with
/// a hundred thousand mails queued, each batch cost a sort of them all.
const DUE: &str = "SELECT id, recipient, subject, text, html, trace FROM mails
     WHERE status = 'pending' AND next_attempt <= ?1 ORDER BY next_attempt, seq LIMIT ?2";

fn event_info(conn: &Connection, id: &str) -> sqlite::rusqlite::Result<Option<EventInfo>> {
    conn.prepare_cached("SELECT name, start_date FROM events WHERE id = ?1")?
        .query_row([id], |r| {
            let start: i64 = r.get(1)?;
            Ok(EventInfo {
                name: r.get(0)?,
                starts: DateTime::from_timestamp(start, 0).unwrap_or_default(),
            })
        })
        .optional()
}

/// Applies one event, mailing its fact if `mail` (see [`NotificationStore::apply`]); the inbox
/// is `bus::inbox::apply_once`'s business.
fn apply_one(
    conn: &Connection,
    event: &DomainEvent,
    mailing: Option<Mailing>,
) -> Result<bus::Outcome, DbError> {
    let fact = match event {
        DomainEvent::EventCreated(created) => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO events (id, name, start_date) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                created.id,
                created.name,
                created.start_date.timestamp()
            ])?;
            return Ok(bus::Outcome::Applied);
        }
        DomainEvent::EventBooked(booked) => {
            // The event's eventCreated comes first on every broker (same key); if it has not
            // yet, the booking is retried rather than mailed without its event.
            let Some(event) = event_info(conn, &booked.event_id)? else {
                return Ok(bus::Outcome::Retry(format!(
                    "event {} is not known yet",
                    booked.event_id
                )));
            };
            conn.prepare_cached(
                "INSERT OR IGNORE INTO bookings (id, event_id, email, seats) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![booked.booking_id, booked.event_id, booked.email, booked.seats])?;
            Fact::Booked {
                booking_id: booked.booking_id.clone(),
                event,
                seats: booked.seats,
                email: booked.email.clone(),
                guest: booked.user_id.is_empty(),
            }
        }
        DomainEvent::BookingCancelled(cancelled) => {
            let booking: Option<(String, String)> = conn
                .prepare_cached("SELECT event_id, email FROM bookings WHERE id = ?1")?
                .query_row([&cancelled.booking_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((event_id, email)) = booking else {
                return Ok(bus::Outcome::Retry(format!(
                    "booking {} is not known yet",
                    cancelled.booking_id
                )));
            };
            let Some(event) = event_info(conn, &event_id)? else {
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
        insert_mail(conn, &mail)?;
    }
    Ok(bus::Outcome::Applied)
}

/// Milliseconds before the next attempt after `attempts` failures: 2 s, 4 s, 8 s … 5 minutes.
fn retry_delay_ms(attempts: u32) -> i64 {
    1000 * (1i64 << attempts.min(9)).min(300)
}

#[async_trait]
impl NotificationStore for SqliteNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let links = links.clone();
        Ok(self
            .db
            .write(move |c| {
                let since: i64 = c
                    .prepare_cached("SELECT at FROM mail_since")?
                    .query_row([], |r| r.get(0))?;
                bus::inbox::apply_once(c, &batch, |c, received| {
                    apply_one(c, &received.event, received.mailing(since, &links))
                })
            })
            .await?)
    }

    async fn queue(&self, mail: Mail) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| insert_mail(c, &mail).map_err(DbError::from))
            .await?)
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError> {
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let due: Vec<Mail> = self
            .db
            .read(move |c| {
                let mut stmt = c.prepare_cached(DUE)?;
                let rows = stmt.query_map(params![now, limit as i64], |r| {
                    Ok(Mail {
                        id: r.get(0)?,
                        to: r.get(1)?,
                        subject: r.get(2)?,
                        text: r.get(3)?,
                        html: r.get(4)?,
                        trace: r.get(5)?,
                    })
                })?;
                rows.collect()
            })
            .await?;
        // Nothing due, nothing written: every commit wakes the sender, which would otherwise
        // wake itself for ever.
        if due.is_empty() {
            return Ok(due);
        }
        Ok(self
            .db
            .write(move |c| {
                let mut claim = c.prepare_cached(
                    "UPDATE mails SET next_attempt = ?1
                     WHERE id = ?2 AND status = 'pending' AND next_attempt <= ?3",
                )?;
                let mut claimed = Vec::with_capacity(due.len());
                for mail in due {
                    if claim.execute(params![until, mail.id, now])? == 1 {
                        claimed.push(mail);
                    }
                }
                Ok::<_, DbError>(claimed)
            })
            .await?)
    }

    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    "UPDATE mails SET status = 'sent', attempts = attempts + 1 WHERE id = ?1",
                )?;
                for id in &ids {
                    stmt.execute([id])?;
                }
                Ok::<_, DbError>(())
            })
            .await?)
    }

    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError> {
        let (id, error) = (id.to_owned(), error.to_owned());
        Ok(self
            .db
            .write(move |c| {
                let attempts: u32 = c
                    .prepare_cached("SELECT attempts FROM mails WHERE id = ?1")?
                    .query_row([&id], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0)
                    + 1;
                let status = if permanent { "failed" } else { "pending" };
                c.prepare_cached(
                    "UPDATE mails SET status = ?2, attempts = ?3, next_attempt = ?4, last_error = ?5
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    status,
                    attempts,
                    now_ms() + retry_delay_ms(attempts),
                    error
                ])
                .map(|_| ())
                .map_err(DbError::from)
            })
            .await?)
    }

    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        let (depth, first_due) = self
            .db
            .read(|c| {
                c.prepare_cached(
                    "SELECT COUNT(*), MIN(next_attempt) FROM mails WHERE status = 'pending'",
                )?
                .query_row([], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
                })
            })
            .await?;
        Ok(MailQueue {
            depth: u64::try_from(depth).unwrap_or(0),
            first_due: first_due.and_then(DateTime::from_timestamp_millis),
        })
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        Ok(self
            .db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, recipient, subject, text, html, trace, status, attempts FROM mails ORDER BY seq",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(StoredMail {
                        mail: Mail {
                            id: r.get(0)?,
                            to: r.get(1)?,
                            subject: r.get(2)?,
                            text: r.get(3)?,
                            html: r.get(4)?,
                            trace: r.get(5)?,
                        },
                        status: sqlite::stored(r, 6, "mail status", MailStatus::parse)?,
                        attempts: r.get(7)?,
                    })
                })?;
                rows.collect()
            })
            .await?)
    }

    fn committed(&self) -> Arc<Notify> {
        self.db.committed()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sender takes mails due a batch at a time, however many are queued: the query must
    /// walk the `mails_due` index rather than sort the whole queue first.
    #[tokio::test]
    async fn taking_the_mails_due_reads_the_index_in_order_without_sorting_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteNotificationStore::open(&dir.path().join("notifications.db")).unwrap();
        let plan: Vec<String> = store
            .db
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {DUE}"))?;
                let rows = stmt.query_map(params![0, 10], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX mails_due"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
