use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bus::{SqliteUnit, run_now};
use chrono::DateTime;
use sqlite::rusqlite::{self, Connection, OptionalExtension, Params, Row, params};
use sqlite::{Db, DbError, Options, inbox};
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, NotificationStore, StoreError, StoredMail, now};
use crate::domain::rules::{self, Command, Mailer};
use crate::domain::unit::{Attempt, KnownBooking, UnitOfWork};
use crate::domain::{BookingLinks, EventInfo, Mail};

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
        let migrations = vec![SCHEMA, MAIL_TRACE, inbox::MIGRATION];
        let options = Options {
            migrations,
            ..Options::default()
        };
        Ok(Self {
            db: Db::open(path, options)?,
        })
    }
}

/// The oldest mails due, in the order of the `mails_due` index (status, due time, then `seq`,
/// the rowid every index ends with), so that taking a batch reads just that batch. Ordered by
/// `seq` alone, SQLite sorted every pending mail to take the first few: after a flash sale, with
/// a hundred thousand mails queued, each batch cost a sort of them all.
const DUE: &str = "SELECT id, recipient, subject, text, html, trace FROM mails
     WHERE status = 'pending' AND next_attempt <= ?1 ORDER BY next_attempt, seq LIMIT ?2";

fn due(conn: &Connection, now: i64, limit: usize) -> rusqlite::Result<Vec<Mail>> {
    let mut stmt = conn.prepare_cached(DUE)?;
    let rows = stmt.query_map(params![now, limit as i64], mail)?;
    rows.collect()
}

/// A mail from its first six columns: id, recipient, subject, text, html, trace.
fn mail(r: &Row) -> rusqlite::Result<Mail> {
    let (id, to, subject, text) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (html, trace) = (r.get(4)?, r.get(5)?);
    Ok(Mail {
        id,
        to,
        subject,
        text,
        html,
        trace,
    })
}

/// Runs a statement: the rows it changed.
fn exec(conn: &Connection, sql: &str, params: impl Params) -> Result<usize, DbError> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// The row `sql` finds, if any, read with `row`.
fn find<T>(
    conn: &Connection,
    sql: &str,
    id: &str,
    row: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> Result<Option<T>, DbError> {
    Ok(conn.prepare_cached(sql)?.query_row([id], row).optional()?)
}

impl UnitOfWork for SqliteUnit<'_> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, DbError> {
        let sql = "SELECT name, start_date FROM events WHERE id = ?1";
        find(self.conn, sql, id, |r| {
            Ok(EventInfo::stored(r.get(0)?, r.get(1)?))
        })
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), DbError> {
        let sql = "INSERT OR IGNORE INTO events (id, name, start_date) VALUES (?1, ?2, ?3)";
        let starts = event.starts.timestamp();
        exec(self.conn, sql, params![id, event.name, starts]).map(drop)
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, DbError> {
        let sql = "SELECT id, event_id, email, seats FROM bookings WHERE id = ?1";
        find(self.conn, sql, id, |r| {
            let (id, event_id, email, seats) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(KnownBooking {
                id,
                event_id,
                email,
                seats,
            })
        })
    }

    async fn learn_booking(&mut self, b: &KnownBooking) -> Result<(), DbError> {
        let sql =
            "INSERT OR IGNORE INTO bookings (id, event_id, email, seats) VALUES (?1, ?2, ?3, ?4)";
        exec(self.conn, sql, params![b.id, b.event_id, b.email, b.seats]).map(drop)
    }

    async fn queue_mail(&mut self, m: &Mail, due: i64) -> Result<(), DbError> {
        let sql =
            "INSERT OR IGNORE INTO mails (id, recipient, subject, text, html, next_attempt, trace)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        let row = params![m.id, m.to, m.subject, m.text, m.html, due, m.trace];
        exec(self.conn, sql, row).map(drop)
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, DbError> {
        Ok(due(self.conn, now, limit)?)
    }

    async fn take(&mut self, ids: &[String], now: i64, until: i64) -> Result<Vec<String>, DbError> {
        let sql = "UPDATE mails SET next_attempt = ?1
             WHERE id = ?2 AND status = 'pending' AND next_attempt <= ?3";
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            if exec(self.conn, sql, params![until, id, now])? == 1 {
                taken.push(id.clone());
            }
        }
        Ok(taken)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, DbError> {
        let sql = "SELECT attempts FROM mails WHERE id = ?1";
        find(self.conn, sql, id, |r| r.get(0))
    }

    async fn record_attempt(&mut self, id: &str, a: &Attempt<'_>) -> Result<(), DbError> {
        let sql = "UPDATE mails SET status = ?2, attempts = ?3, next_attempt = ?4,
                 last_error = COALESCE(?5, last_error) WHERE id = ?1";
        let attempts = a.attempts();
        let row = params![id, a.status.as_str(), attempts, a.next_attempt, a.error];
        exec(self.conn, sql, row).map(drop)
    }
}

#[async_trait]
impl NotificationStore for SqliteNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let (links, now) = (links.clone(), now());
        let apply = move |conn: &Connection| {
            let since = conn.query_row("SELECT at FROM mail_since", [], |r| r.get(0))?;
            let mut mailer = Mailer {
                links: &links,
                since,
                now,
            };
            run_now(bus::apply_once(
                &mut SqliteUnit::new(conn),
                &batch,
                &mut mailer,
            ))?
        };
        Ok(self.db.write(apply).await?)
    }

    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError> {
        let now = now();
        // Nothing due, nothing written: every commit wakes the sender, which would otherwise
        // wake itself for ever.
        if let Command::Claim { .. } = command
            && self.db.read(move |c| due(c, now, 1)).await?.is_empty()
        {
            return Ok(Vec::new());
        }
        let run = move |conn: &Connection| {
            run_now(rules::run(&mut SqliteUnit::new(conn), &command, now))?
        };
        Ok(self.db.write(run).await?)
    }

    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        let sql = "SELECT COUNT(*), MIN(next_attempt) FROM mails WHERE status = 'pending'";
        let read = |c: &Connection| c.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)));
        let (depth, first_due): (u64, Option<i64>) = self.db.read(read).await?;
        let first_due = first_due.and_then(DateTime::from_timestamp_millis);
        Ok(MailQueue { depth, first_due })
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        let sql = "SELECT id, recipient, subject, text, html, trace, status, attempts
             FROM mails ORDER BY seq";
        let stored = |r: &Row| {
            let status = sqlite::stored(r, 6, "mail status", MailStatus::parse)?;
            let (mail, attempts) = (mail(r)?, r.get(7)?);
            Ok(StoredMail {
                mail,
                status,
                attempts,
            })
        };
        let read = move |c: &Connection| c.prepare(sql)?.query_map([], stored)?.collect();
        Ok(self.db.read(read).await?)
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
