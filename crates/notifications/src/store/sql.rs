//! The notifications service on SQLite and PostgreSQL: one store, its statements written once
//! (see the `sql` crate). The schemas differ in column types; PostgreSQL's senders also lock the
//! mails they claim, so that replicas take different ones.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use sql::{Conn, Db, Dialect, Error, Row, SqlUnit, args};
use sqlite::{DbError, Options, inbox};
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, NotificationStore, StoreError, StoredMail, now};
use crate::domain::rules::{self, Command, Mailer};
use crate::domain::unit::{Attempt, KnownBooking, UnitOfWork};
use crate::domain::{BookingLinks, EventInfo, Mail};

const SQLITE_SCHEMA: &str = "
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
const SQLITE_MAIL_TRACE: &str = "ALTER TABLE mails ADD COLUMN trace TEXT";

/// The same tables as in SQLite (see the SQLite schema for what each holds).
#[cfg(feature = "postgres")]
const PG_SCHEMA: &str = "
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

/// The notifications service's tables in a SQLite file, or in PostgreSQL (in the schema
/// `notifications`).
pub struct SqlNotificationStore {
    db: Db,
}

impl SqlNotificationStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let migrations = vec![SQLITE_SCHEMA, SQLITE_MAIL_TRACE, inbox::MIGRATION];
        let options = Options {
            migrations,
            ..Options::default()
        };
        Ok(Self {
            db: Db::sqlite(path, options)?,
        })
    }

    /// Prepares the store without connecting; see [`postgres::Pg::connect_lazy`].
    #[cfg(feature = "postgres")]
    pub fn connect(url: &str) -> Result<Self, postgres::PgError> {
        let options = postgres::Options {
            schema: "notifications".into(),
            migrations: vec![PG_SCHEMA, postgres::inbox::MIGRATION],
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

/// The oldest mails due, in the order of the `mails_due` index (status, due time, then `seq`,
/// the rowid every index ends with), so that taking a batch reads just that batch. Ordered by
/// `seq` alone, SQLite sorted every pending mail to take the first few: after a flash sale, with
/// a hundred thousand mails queued, each batch cost a sort of them all.
const DUE: &str = "SELECT id, recipient, subject, text, html, trace FROM mails
     WHERE status = 'pending' AND next_attempt <= $1 ORDER BY next_attempt, seq LIMIT $2";

async fn due(conn: &mut impl Conn, now: i64, limit: usize) -> Result<Vec<Mail>, Error> {
    // SKIP LOCKED: a PostgreSQL replica's sender claiming at the same moment takes other mails
    // rather than waiting for these and then finding them taken.
    let sql = match conn.dialect() {
        Dialect::Sqlite => Cow::Borrowed(DUE),
        Dialect::Postgres => Cow::Owned(format!("{DUE} FOR UPDATE SKIP LOCKED")),
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    conn.fetch(&sql, args![now, limit], mail).await
}

/// A mail from its first six columns: id, recipient, subject, text, html, trace.
fn mail(r: &Row<'_>) -> Result<Mail, Error> {
    Ok(Mail {
        id: r.text(0)?,
        to: r.text(1)?,
        subject: r.text(2)?,
        text: r.text(3)?,
        html: r.text(4)?,
        trace: r.opt_text(5)?,
    })
}

async fn mail_queue(conn: &mut impl Conn) -> Result<MailQueue, Error> {
    let sql = "SELECT COUNT(*), MIN(next_attempt) FROM mails WHERE status = 'pending'";
    let queue = conn.fetch_optional(sql, &[], |r| {
        Ok(MailQueue {
            depth: r.int(0)?,
            first_due: r.opt_i64(1)?.and_then(DateTime::from_timestamp_millis),
        })
    });
    Ok(queue.await?.unwrap_or_default())
}

async fn mails(conn: &mut impl Conn) -> Result<Vec<StoredMail>, Error> {
    let sql = "SELECT id, recipient, subject, text, html, trace, status, attempts
         FROM mails ORDER BY seq";
    conn.fetch(sql, &[], |r| {
        Ok(StoredMail {
            mail: mail(r)?,
            status: r.stored(6, "mail status", MailStatus::parse)?,
            attempts: r.int(7)?,
        })
    })
    .await
}

/// Applies a batch with the [`Mailer`] rule, which needs to know since when this store mails.
async fn apply<C: Conn>(
    unit: &mut SqlUnit<C>,
    batch: &[Delivered],
    links: &BookingLinks,
    now: i64,
) -> Result<Vec<bus::Outcome>, Error> {
    let since = unit
        .conn
        .fetch("SELECT at FROM mail_since", &[], |r| r.i64(0));
    let since = since.await?.into_iter().next().unwrap_or_default();
    let mut mailer = Mailer { links, since, now };
    bus::apply_once(unit, batch, &mut mailer).await
}

impl<C: Conn> UnitOfWork for SqlUnit<C> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, Error> {
        let sql = "SELECT name, start_date FROM events WHERE id = $1";
        let read = |r: &Row<'_>| Ok(EventInfo::stored(r.text(0)?, r.i64(1)?));
        self.conn.fetch_optional(sql, args![id], read).await
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), Error> {
        let sql = "INSERT INTO events (id, name, start_date) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING";
        let starts = event.starts.timestamp();
        self.conn
            .execute(sql, args![id, &event.name, starts])
            .await?;
        Ok(())
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, Error> {
        let sql = "SELECT id, event_id, email, seats FROM bookings WHERE id = $1";
        let read = |r: &Row<'_>| {
            Ok(KnownBooking {
                id: r.text(0)?.into(),
                event_id: r.text(1)?.into(),
                email: r.text(2)?,
                seats: r.int(3)?,
            })
        };
        self.conn.fetch_optional(sql, args![id], read).await
    }

    async fn learn_booking(&mut self, b: &KnownBooking) -> Result<(), Error> {
        let sql = "INSERT INTO bookings (id, event_id, email, seats) VALUES ($1, $2, $3, $4)
                   ON CONFLICT DO NOTHING";
        let args = args![&b.id, &b.event_id, &b.email, b.seats];
        self.conn.execute(sql, args).await?;
        Ok(())
    }

    async fn queue_mail(&mut self, m: &Mail, due: i64) -> Result<(), Error> {
        let sql = "INSERT INTO mails (id, recipient, subject, text, html, next_attempt, trace)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
        let args = args![&m.id, &m.to, &m.subject, &m.text, &m.html, due, &m.trace];
        self.conn.execute(sql, args).await?;
        Ok(())
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, Error> {
        due(&mut self.conn, now, limit).await
    }

    async fn take(&mut self, ids: &[String], now: i64, until: i64) -> Result<Vec<String>, Error> {
        if self.conn.dialect() == Dialect::Postgres {
            // One round trip for the lot.
            let sql = "UPDATE mails SET next_attempt = $1
                       WHERE id = ANY($2) AND status = 'pending' AND next_attempt <= $3
                       RETURNING id";
            let args = [
                sql::Arg::from(until),
                sql::Arg::Texts(ids),
                sql::Arg::from(now),
            ];
            return self.conn.fetch(sql, &args, |r| r.text(0)).await;
        }
        // SQLite has no arrays: one prepared statement per mail, which costs less in process
        // than a statement as long as each claim, parsed anew every time.
        let sql = "UPDATE mails SET next_attempt = $1
                   WHERE id = $2 AND status = 'pending' AND next_attempt <= $3";
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            if self.conn.execute(sql, args![until, id, now]).await? == 1 {
                taken.push(id.clone());
            }
        }
        Ok(taken)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, Error> {
        // Locked on PostgreSQL: a sender recording the same mail at the same time waits, and
        // counts after.
        let sql = (self.conn.dialect()).locked("SELECT attempts FROM mails WHERE id = $1");
        self.conn
            .fetch_optional(&sql, args![id], |r| r.int(0))
            .await
    }

    async fn record_attempt(&mut self, id: &str, a: &Attempt<'_>) -> Result<(), Error> {
        let sql = "UPDATE mails SET status = $2, attempts = $3, next_attempt = $4,
                       last_error = COALESCE($5, last_error) WHERE id = $1";
        let (status, attempts) = (a.status.as_str(), a.attempts());
        let args = args![id, status, attempts, a.next_attempt, a.error];
        self.conn.execute(sql, args).await?;
        Ok(())
    }
}

#[async_trait]
impl NotificationStore for SqlNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let (links, now) = (links.clone(), now());
        let outcomes = sql::write!(&self.db, (), |unit| apply(unit, &batch, &links, now))?;
        // PostgreSQL wakes the sender only for commits that emit events: this one emits none.
        // (SQLite wakes it on every commit; waking it twice made it claim twice as often.)
        #[cfg(feature = "postgres")]
        if matches!(self.db, Db::Postgres(_)) {
            self.committed().notify_waiters();
        }
        Ok(outcomes)
    }

    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError> {
        let now = now();
        // Nothing due, nothing written: every commit wakes the sender, which would otherwise
        // wake itself for ever.
        if let Command::Claim { .. } = command
            && sql::read!(&self.db, |conn| due(conn, now, 1))?.is_empty()
        {
            return Ok(Vec::new());
        }
        Ok(sql::write!(&self.db, (), |unit| rules::run(
            unit, &command, now
        ))?)
    }

    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        Ok(sql::read!(&self.db, |conn| mail_queue(conn))?)
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        Ok(sql::read!(&self.db, |conn| mails(conn))?)
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
        let store = SqlNotificationStore::open(&dir.path().join("notifications.db")).unwrap();
        let explain = format!("EXPLAIN QUERY PLAN {DUE}");
        let plan = sql::read!(&store.db, |conn| conn.fetch(
            &explain,
            args![0i64, 10i64],
            |r| r.text(3)
        ))
        .unwrap()
        .join("\n");
        assert!(plan.contains("USING INDEX mails_due"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
