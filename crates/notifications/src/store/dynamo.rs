use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use dynamo::inbox::{self, Change};
use dynamo::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use dynamo::{Dynamo, DynamoError, KeyKind, Options, Query, Table, Write};
use tokio::sync::{Notify, OnceCell};

use super::{Delivered, MailQueue, MailStatus, Mailing, NotificationStore, StoreError, StoredMail};
use crate::domain::{BookingLinks, EventInfo, Fact, Mail};

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
    /// Woken after every commit that may have queued a mail; the sender waits on it.
    committed: Arc<Notify>,
    mail_since: OnceCell<i64>,
}

impl DynamoNotificationStore {
    /// Prepares the store without connecting; see [`Dynamo::open`].
    pub fn connect(url: &str) -> Result<Self, DynamoError> {
        let db = Dynamo::open(
            url,
            Options {
                service: "notifications",
                tables: vec![
                    Table::new(EVENTS, ("id", KeyKind::S)),
                    Table::new(BOOKINGS, ("id", KeyKind::S)),
                    Table::new(MAILS, ("id", KeyKind::S)).index(
                        DUE,
                        ("queue", KeyKind::S),
                        Some(("queued", KeyKind::N)),
                    ),
                    Table::new(META, ("id", KeyKind::S)),
                    inbox::table(),
                ],
            },
        )?;
        Ok(Self {
            db,
            committed: Arc::new(Notify::new()),
            mail_since: OnceCell::new(),
        })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), DynamoError> {
        self.db.create_tables().await?;
        self.mail_since().await.map(|_| ())
    }

    /// When the store was first opened, less a minute for clocks: recorded by the first process
    /// that asks, on condition that none did before.
    async fn mail_since(&self) -> Result<i64, DynamoError> {
        let key = || item([("id", s("mail_since"))]);
        let db = &self.db;
        let read = || async {
            match db.get(META, key()).await? {
                Some(found) => get_n::<i64>(&found, "at").map(Some),
                None => Ok(None),
            }
        };
        self.mail_since
            .get_or_try_init(|| async {
                if let Some(at) = read().await? {
                    return Ok(at);
                }
                let mut first = key();
                first.insert("at".into(), n(Utc::now().timestamp() - 60));
                db.write(Write::put(db.table(META), first).when("attribute_not_exists(id)"))
                    .await?;
                read()
                    .await?
                    .ok_or_else(|| DynamoError::Data("mail_since vanished".into()))
            })
            .await
            .copied()
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

/// The write that queues `mail`, unless a mail with its id exists (then `None`): a fact's mail
/// is queued once, however often the fact is delivered.
async fn queue_mail(db: &Dynamo, mail: &Mail) -> Result<Option<Write>, DynamoError> {
    if db.get(MAILS, item([("id", s(&mail.id))])).await?.is_some() {
        return Ok(None);
    }
    let mut queued = item([
        ("id", s(&mail.id)),
        ("recipient", s(&mail.to)),
        ("subject", s(&mail.subject)),
        ("text", s(&mail.text)),
        ("html", s(&mail.html)),
        ("status", s("pending")),
        ("attempts", n(0)),
        ("next_attempt", n(0)),
        ("queue", s(PENDING)),
        ("queued", n(queue_order())),
    ]);
    if let Some(trace) = &mail.trace {
        queued.insert("trace".into(), s(trace));
    }
    // Queued by someone else meanwhile: the transaction is refused and made again.
    Ok(Some(
        Write::put(db.table(MAILS), queued).when("attribute_not_exists(id)"),
    ))
}

async fn event_info(db: &Dynamo, id: &str) -> Result<Option<EventInfo>, DynamoError> {
    let Some(found) = db.get(EVENTS, item([("id", s(id))])).await? else {
        return Ok(None);
    };
    Ok(Some(EventInfo {
        name: get_s(&found, "name")?,
        starts: DateTime::from_timestamp(get_n(&found, "start_date")?, 0).unwrap_or_default(),
    }))
}

/// Puts `stored` unless an item with its key exists (learning the same fact twice changes
/// nothing).
fn learn(db: &Dynamo, table: &str, stored: Item) -> Write {
    Write::put(db.table(table), stored).when("attribute_not_exists(id)")
}

/// Applies one event, mailing its fact if `mail`; mirrors `sqlite.rs`.
async fn apply_one(
    db: &Dynamo,
    event: &DomainEvent,
    mailing: Option<Mailing>,
) -> Result<Change, DynamoError> {
    let retry = |why: String| Ok(Change::not_applied(bus::Outcome::Retry(why)));
    let mut writes = Vec::new();
    let fact = match event {
        DomainEvent::EventCreated(created) => {
            if event_info(db, &created.id).await?.is_none() {
                let stored = item([
                    ("id", s(&created.id)),
                    ("name", s(&created.name)),
                    ("start_date", n(created.start_date.timestamp())),
                ]);
                writes.push(learn(db, EVENTS, stored));
            }
            return Ok(Change::applied(writes, Vec::new()));
        }
        DomainEvent::EventBooked(booked) => {
            let Some(event) = event_info(db, &booked.event_id).await? else {
                return retry(format!("event {} is not known yet", booked.event_id));
            };
            let known = db
                .get(BOOKINGS, item([("id", s(&booked.booking_id))]))
                .await?;
            if known.is_none() {
                let stored = item([
                    ("id", s(&booked.booking_id)),
                    ("event_id", s(&booked.event_id)),
                    ("email", s(&booked.email)),
                    ("seats", n(booked.seats)),
                ]);
                writes.push(learn(db, BOOKINGS, stored));
            }
            Fact::Booked {
                booking_id: booked.booking_id.clone(),
                event,
                seats: booked.seats,
                email: booked.email.clone(),
                guest: booked.user_id.is_empty(),
            }
        }
        DomainEvent::BookingCancelled(cancelled) => {
            let booking = db
                .get(BOOKINGS, item([("id", s(&cancelled.booking_id))]))
                .await?;
            let Some(booking) = booking else {
                return retry(format!("booking {} is not known yet", cancelled.booking_id));
            };
            let event_id = get_s(&booking, "event_id")?;
            let Some(event) = event_info(db, &event_id).await? else {
                return retry(format!("event {event_id} is not known yet"));
            };
            Fact::cancellation(
                cancelled.booking_id.clone(),
                event,
                cancelled.seats,
                get_s(&booking, "email")?,
                cancelled.reason,
            )
        }
        DomainEvent::UserCreated(user) => Fact::Welcome {
            user_id: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
        },
        DomainEvent::LocationCreated(_) | DomainEvent::EventCancelled(_) => {
            return Ok(Change::applied(Vec::new(), Vec::new()));
        }
    };
    if let Some(mail) = mailing.and_then(|mailing| mailing.mail(&fact)) {
        writes.extend(queue_mail(db, &mail).await?);
    }
    Ok(Change::applied(writes, Vec::new()))
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

fn mail_key(id: &str) -> Item {
    item([("id", s(id))])
}

#[async_trait]
impl NotificationStore for DynamoNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let since = self.mail_since().await?;
        let outcomes = inbox::apply_once(&self.db, &batch, |db, received| {
            let mailing = received.mailing(since, links);
            Box::pin(apply_one(db, &received.event, mailing))
        })
        .await?;
        self.committed.notify_waiters();
        Ok(outcomes)
    }

    async fn queue(&self, mail: Mail) -> Result<(), StoreError> {
        // `false`: queued by someone else meanwhile, which is as good.
        if let Some(write) = queue_mail(&self.db, &mail).await? {
            self.db.write(write).await?;
        }
        self.committed.notify_waiters();
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError> {
        let now = Utc::now().timestamp_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
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
        let keys = candidates
            .iter()
            .map(|c| Ok(mail_key(&get_s(c, "id")?)))
            .collect::<Result<Vec<_>, DynamoError>>()?;
        let mut due = Vec::new();
        for found in self.db.get_many(MAILS, keys).await? {
            if get_s(&found, "status")? == "pending" && get_n::<i64>(&found, "next_attempt")? <= now
            {
                due.push((get_n::<i64>(&found, "queued")?, mail(&found)?));
            }
        }
        due.sort_by_key(|(queued, _)| *queued);
        // Each one taken on condition that it is still due: a replica's sender that took it
        // first changed its next attempt.
        let mut claimed = Vec::with_capacity(due.len());
        for (_, mail) in due {
            let claim = Write::update(
                self.db.table(MAILS),
                mail_key(&mail.id),
                "SET next_attempt = :until",
            )
            .when("#status = :pending AND next_attempt <= :now")
            .name("#status", "status")
            .value(":pending", s(PENDING))
            .value(":now", n(now))
            .value(":until", n(until));
            if self.db.write(claim).await? {
                claimed.push(mail);
            }
        }
        Ok(claimed)
    }

    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError> {
        for id in ids {
            let sent = Write::update(
                self.db.table(MAILS),
                mail_key(&id),
                "SET #status = :sent, attempts = attempts + :one REMOVE #queue",
            )
            .when("attribute_exists(id)")
            .name("#status", "status")
            .name("#queue", "queue")
            .value(":sent", s("sent"))
            .value(":one", n(1));
            self.db.write(sent).await?;
        }
        Ok(())
    }

    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let Some(found) = self.db.get(MAILS, mail_key(id)).await? else {
                return Ok(());
            };
            let attempts: u32 = get_n(&found, "attempts")?;
            // 2 s, 4 s, 8 s … 5 minutes after the attempt, as in SQLite.
            let wait_ms = 1000 * 2_i64.pow((attempts + 1).min(9)).min(300);
            let (status, expression) = if permanent {
                (
                    "failed",
                    "SET #status = :status, attempts = :next, last_error = :error, next_attempt = :at REMOVE #queue",
                )
            } else {
                (
                    "pending",
                    "SET #status = :status, attempts = :next, last_error = :error, next_attempt = :at",
                )
            };
            let mut failed = Write::update(self.db.table(MAILS), mail_key(id), expression)
                // Counted once even if two senders record a failure at the same time.
                .when("attempts = :attempts")
                .name("#status", "status")
                .value(":status", s(status))
                .value(":attempts", n(attempts))
                .value(":next", n(attempts + 1))
                .value(":error", s(error))
                .value(":at", n(Utc::now().timestamp_millis() + wait_ms));
            if permanent {
                failed = failed.name("#queue", "queue");
            }
            if self.db.write(failed).await? {
                return Ok(());
            }
            self.db.patience(started, "recording a failed mail")?;
        }
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
        // A mail not tried yet is due from when it was queued (its `next_attempt` is 0).
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
            let status =
                platform::error::stored("mail status", &get_s(&i, "status")?, MailStatus::parse)?;
            let queued: i64 = get_n(&i, "queued")?;
            stored.push((
                queued,
                StoredMail {
                    mail: mail(&i)?,
                    status,
                    attempts: get_n(&i, "attempts")?,
                },
            ));
        }
        stored.sort_by_key(|(queued, _)| *queued);
        Ok(stored.into_iter().map(|(_, m)| m).collect())
    }

    fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
