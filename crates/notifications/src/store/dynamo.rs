use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dynamo::inbox::{self, apply_each};
use dynamo::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use dynamo::{Dynamo, DynamoError, DynamoUnit, KeyKind, Options, Query, Table, Write};
use tokio::sync::{Notify, OnceCell};

use super::{Delivered, MailQueue, MailStatus, NotificationStore, StoreError, StoredMail, now};
use crate::domain::rules::{self, Command, Mailer};
use crate::domain::unit::{Attempt, KnownBooking, UnitOfWork};
use crate::domain::{BookingLinks, EventInfo, Mail};

/// The same tables as in SQLite (see `sqlite.rs` for what each holds).
const EVENTS: &str = "events";
const BOOKINGS: &str = "bookings";
const MAILS: &str = "mails";
/// One item, `mail_since`: when the store was first opened (see `NotificationStore::apply`).
const META: &str = "meta";
/// Mails waiting to be sent: only they have the `queue` attribute, sorted by `queued`.
const DUE: &str = "due";
const PENDING: &str = "pending";

/// The notifications service's tables in DynamoDB: `<prefix>.notifications.*`.
pub struct DynamoNotificationStore {
    db: Dynamo,
    mail_since: OnceCell<i64>,
}

impl DynamoNotificationStore {
    /// Prepares the store without connecting; see [`Dynamo::open`].
    pub fn connect(url: &str) -> Result<Self, DynamoError> {
        let table = |name| Table::new(name, ("id", KeyKind::S));
        let due = (("queue", KeyKind::S), Some(("queued", KeyKind::N)));
        let tables = vec![
            table(EVENTS),
            table(BOOKINGS),
            table(MAILS).index(DUE, due.0, due.1),
            table(META),
            inbox::table(),
        ];
        let options = Options {
            service: "notifications",
            tables,
        };
        let (db, mail_since) = (Dynamo::open(url, options)?, OnceCell::new());
        Ok(Self { db, mail_since })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), DynamoError> {
        self.db.create_tables().await?;
        self.mail_since().await.map(|_| ())
    }

    /// When the store was first opened, less a minute for clocks: recorded by the first process
    /// that asks, on condition that none did before.
    async fn mail_since(&self) -> Result<i64, DynamoError> {
        let db = &self.db;
        let first = || async {
            let mut first = key("mail_since");
            first.insert("at".into(), n(Utc::now().timestamp() - 60));
            db.write(Write::put(db.table(META), first).when("attribute_not_exists(id)"))
                .await?;
            let found = db.get(META, key("mail_since")).await?;
            get_n(&found.unwrap_or_default(), "at")
        };
        self.mail_since.get_or_try_init(first).await.copied()
    }

    /// Runs `command` in a unit of its own, again while a write's condition fails: a sender
    /// recording the same mail at the same time changed it first, or someone queued the same
    /// mail meanwhile. A claim's mails are taken as it goes (see `take`).
    async fn commit(&self, command: &Command) -> Result<Vec<Mail>, DynamoError> {
        dynamo::until_committed(&self.db, "running a command", command, |unit, command| {
            Box::pin(rules::run(unit, command, now()))
        })
        .await
    }
}

/// A number that grows with every mail this process queues (microseconds since 1970, made
/// unique), so that mails are sent in the order they were queued.
fn queue_order() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_micros();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

/// Writes `stored` unless an item with its id exists (the same fact learnt, or the same mail
/// queued, twice). Put by someone else meanwhile: the transaction is refused and made again.
async fn put_new(unit: &mut DynamoUnit<'_>, table: &str, stored: Item) -> Result<(), DynamoError> {
    let id = get_s(&stored, "id")?;
    if unit.db.get(table, key(&id)).await?.is_none() {
        let put = Write::put(unit.db.table(table), stored).when("attribute_not_exists(id)");
        unit.writes.push(put);
    }
    Ok(())
}

fn mail(i: &Item) -> Result<Mail, DynamoError> {
    Ok(Mail {
        id: get_s(i, "id")?,
        to: get_s(i, "recipient")?,
        subject: get_s(i, "subject")?,
        text: get_s(i, "text")?,
        html: get_s(i, "html")?,
        trace: get_s_opt(i, "trace")?,
    })
}

/// The key of an item of any table here.
fn key(id: &str) -> Item {
    item([("id", s(id))])
}

impl UnitOfWork for DynamoUnit<'_> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, DynamoError> {
        let found = self.db.get(EVENTS, key(id)).await?;
        let event = |e: Item| {
            Ok(EventInfo::stored(
                get_s(&e, "name")?,
                get_n(&e, "start_date")?,
            ))
        };
        found.map(event).transpose()
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), DynamoError> {
        let start_date = n(event.starts.timestamp());
        let stored = item([
            ("id", s(id)),
            ("name", s(&event.name)),
            ("start_date", start_date),
        ]);
        put_new(self, EVENTS, stored).await
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, DynamoError> {
        let found = self.db.get(BOOKINGS, key(id)).await?;
        let booking = |b: Item| {
            let (id, event_id) = (get_s(&b, "id")?, get_s(&b, "event_id")?);
            let (email, seats) = (get_s(&b, "email")?, get_n(&b, "seats")?);
            Ok(KnownBooking {
                id: id.into(),
                event_id: event_id.into(),
                email,
                seats,
            })
        };
        found.map(booking).transpose()
    }

    async fn learn_booking(&mut self, booking: &KnownBooking) -> Result<(), DynamoError> {
        let stored = item([
            ("id", s(&booking.id)),
            ("event_id", s(&booking.event_id)),
            ("email", s(&booking.email)),
            ("seats", n(booking.seats)),
        ]);
        put_new(self, BOOKINGS, stored).await
    }

    async fn queue_mail(&mut self, mail: &Mail, due: i64) -> Result<(), DynamoError> {
        let mut queued = item([
            ("id", s(&mail.id)),
            ("recipient", s(&mail.to)),
            ("subject", s(&mail.subject)),
            ("text", s(&mail.text)),
            ("html", s(&mail.html)),
            ("status", s(PENDING)),
            ("attempts", n(0)),
            ("next_attempt", n(due)),
            ("queue", s(PENDING)),
            ("queued", n(queue_order())),
        ]);
        if let Some(trace) = &mail.trace {
            queued.insert("trace".into(), s(trace));
        }
        put_new(self, MAILS, queued).await
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, DynamoError> {
        let query = Query::new("#queue = :pending")
            .index(DUE)
            .filter("next_attempt <= :now")
            .name("#queue", "queue")
            .value(":pending", s(PENDING))
            .value(":now", n(now))
            .limit(limit);
        let candidates = self.db.query(MAILS, query).await?;
        // The index may lag behind the table on AWS: what it lists is read again, so that a
        // mail sent a moment ago is not sent twice.
        let keys: Result<Vec<Item>, DynamoError> = candidates
            .iter()
            .map(|c| Ok(key(&get_s(c, "id")?)))
            .collect();
        let mut due = Vec::new();
        for found in self.db.get_many(MAILS, keys?).await? {
            if get_s(&found, "status")? == PENDING && get_n::<i64>(&found, "next_attempt")? <= now {
                due.push((get_n::<i64>(&found, "queued")?, mail(&found)?));
            }
        }
        due.sort_by_key(|(queued, _)| *queued);
        Ok(due.into_iter().map(|(_, mail)| mail).collect())
    }

    async fn take(
        &mut self,
        ids: &[String],
        now: i64,
        until: i64,
    ) -> Result<Vec<String>, DynamoError> {
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let take = Write::update(self.db.table(MAILS), key(id), "SET next_attempt = :until")
                .when("#status = :pending AND next_attempt <= :now")
                .name("#status", "status")
                .value(":pending", s(PENDING))
                .value(":now", n(now))
                .value(":until", n(until));
            if self.db.write(take).await? {
                taken.push(id.clone());
            }
        }
        Ok(taken)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, DynamoError> {
        let found = self.db.get(MAILS, key(id)).await?;
        found.map(|mail| get_n(&mail, "attempts")).transpose()
    }

    async fn record_attempt(&mut self, id: &str, attempt: &Attempt<'_>) -> Result<(), DynamoError> {
        let mut expression =
            String::from("SET #status = :status, attempts = :next, next_attempt = :at");
        if attempt.error.is_some() {
            expression.push_str(", last_error = :error");
        }
        // Only pending mails are in the queue's index.
        if attempt.status != MailStatus::Pending {
            expression.push_str(" REMOVE #queue");
        }
        let mut write = Write::update(self.db.table(MAILS), key(id), &expression)
            // Counted once even if two senders record an attempt at the same time.
            .when("attempts = :counted")
            .name("#status", "status")
            .value(":status", s(attempt.status.as_str()))
            .value(":counted", n(attempt.counted))
            .value(":next", n(attempt.attempts()))
            .value(":at", n(attempt.next_attempt));
        if let Some(error) = attempt.error {
            write = write.value(":error", s(error));
        }
        if attempt.status != MailStatus::Pending {
            write = write.name("#queue", "queue");
        }
        self.writes.push(write);
        Ok(())
    }
}

#[async_trait]
impl NotificationStore for DynamoNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let (since, now) = (self.mail_since().await?, now());
        let mut mailer = Mailer { links, since, now };
        let outcomes = apply_each(&self.db, &batch, || (), &mut mailer).await?;
        self.committed().notify_waiters();
        Ok(outcomes)
    }

    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError> {
        // A transaction takes at most 100 writes: each mail sent is recorded in one of its own.
        if let Command::Sent(ids) = command {
            for id in ids {
                self.commit(&Command::Sent(vec![id])).await?;
            }
            return Ok(Vec::new());
        }
        Ok(self.commit(&command).await?)
    }

    /// The first due is the due time of the mail queued first: the index is ordered by when
    /// mails were queued, not by when they are next due, and reading every pending mail to find
    /// the earliest would cost a read of the whole queue. It differs only after retries.
    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        let pending = || {
            Query::new("#queue = :pending")
                .index(DUE)
                .name("#queue", "queue")
                .value(":pending", s(PENDING))
        };
        let depth = self.db.count(MAILS, pending()).await?;
        let first = self.db.query(MAILS, pending().limit(1)).await?;
        // A mail queued before due times were kept (its `next_attempt` is 0) is due from when it
        // was queued.
        let due_ms = |m: &Item| -> Result<i64, DynamoError> {
            let queued_us: i64 = get_n(m, "queued")?;
            Ok(get_n::<i64>(m, "next_attempt")?.max(queued_us / 1000))
        };
        let first_due = first
            .first()
            .map(due_ms)
            .transpose()?
            .and_then(DateTime::from_timestamp_millis);
        Ok(MailQueue { depth, first_due })
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        let mut stored = Vec::new();
        for i in self.db.scan(MAILS).await? {
            let status = get_s(&i, "status")?;
            let status = platform::error::stored("mail status", &status, MailStatus::parse)?;
            let (mail, attempts) = (mail(&i)?, get_n(&i, "attempts")?);
            let queued: i64 = get_n(&i, "queued")?;
            stored.push((
                queued,
                StoredMail {
                    mail,
                    status,
                    attempts,
                },
            ));
        }
        stored.sort_by_key(|(queued, _)| *queued);
        Ok(stored.into_iter().map(|(_, m)| m).collect())
    }

    /// The database's own, which only commits that emit events wake otherwise: this
    /// service's rules emit none.
    fn committed(&self) -> Arc<Notify> {
        self.db.committed()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
