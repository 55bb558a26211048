use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::DomainEvent;
use mongo::bson::oid::ObjectId;
use mongo::bson::{Document, doc};
use mongo::{Collection, Mongo, MongoError, Options, Tx, inbox};
use serde::Deserialize;
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, Mailing, NotificationStore, StoreError, StoredMail};
use crate::domain::{BookingLinks, EventInfo, Fact, Mail};

/// The same collections as SQLite's tables (see `sqlite.rs` for what each holds), by `_id`.
const EVENTS: &str = "events";
const BOOKINGS: &str = "bookings";
/// Mails by id (`_id`); `order` (an ObjectId, increasing) keeps the order they were queued in.
const MAILS: &str = "mails";
/// One document: facts from before `at` (Unix seconds) are learnt but not mailed.
const MAIL_SINCE: &str = "mail_since";

#[derive(Deserialize)]
struct EventDoc {
    name: String,
    start_date: i64,
}

#[derive(Deserialize)]
struct BookingDoc {
    event_id: String,
    email: String,
}

#[derive(Deserialize)]
struct MailDoc {
    #[serde(rename = "_id")]
    id: String,
    recipient: String,
    subject: String,
    text: String,
    html: String,
    /// Absent in mails queued before traces were kept.
    #[serde(default)]
    trace: Option<String>,
    status: String,
    attempts: u32,
}

impl TryFrom<MailDoc> for StoredMail {
    type Error = MongoError;

    fn try_from(d: MailDoc) -> Result<StoredMail, MongoError> {
        Ok(StoredMail {
            mail: Mail {
                id: d.id,
                to: d.recipient,
                subject: d.subject,
                text: d.text,
                html: d.html,
                trace: d.trace,
            },
            status: platform::error::stored("mail status", &d.status, MailStatus::parse)?,
            attempts: d.attempts,
        })
    }
}

/// The notifications service's collections in MongoDB, in the database
/// `<database>_notifications`.
pub struct MongoNotificationStore {
    mongo: Mongo,
    /// Woken after every commit that may have queued a mail; the sender waits on it.
    committed: Arc<Notify>,
}

impl MongoNotificationStore {
    /// Prepares the store without connecting; see [`Mongo::open`].
    pub fn connect(url: &str) -> Result<Self, MongoError> {
        // Written once, by the first start that reaches the database (less a minute for clocks).
        let since = Utc::now().timestamp() - 60;
        let mongo = Mongo::open(
            url,
            Options {
                service: "notifications",
                collections: vec![
                    Collection::new(EVENTS),
                    Collection::new(BOOKINGS),
                    Collection::new(MAILS)
                        .index(doc! {"status": 1, "next_attempt": 1}, false)
                        .index(doc! {"order": 1}, false),
                    Collection::new(MAIL_SINCE),
                ],
                seeds: vec![(MAIL_SINCE, doc! {"_id": MAIL_SINCE, "at": since})],
            },
        )?;
        Ok(Self {
            mongo,
            committed: Arc::new(Notify::new()),
        })
    }

    /// Creates the collections and indexes now rather than on first use.
    pub async fn migrate(&self) -> Result<(), MongoError> {
        self.mongo.migrate().await
    }
}

/// Queues `mail` unless a mail with its id is queued already.
async fn insert_mail(tx: &mut Tx, mail: &Mail) -> Result<(), MongoError> {
    tx.update_one(
        MAILS,
        doc! {"_id": &mail.id},
        doc! {"$setOnInsert": {
            "order": ObjectId::new(),
            "recipient": &mail.to,
            "subject": &mail.subject,
            "text": &mail.text,
            "html": &mail.html,
            "trace": &mail.trace,
            "status": "pending",
            "attempts": 0_i64,
            // Due from now: mails go out in the order they became due (see the SQLite store).
            "next_attempt": Utc::now().timestamp_millis(),
        }},
        true,
    )
    .await?;
    Ok(())
}

/// Inserts `document` unless one with its `_id` exists.
async fn insert_once(tx: &mut Tx, collection: &str, document: Document) -> Result<(), MongoError> {
    let id = document.get("_id").cloned().unwrap_or_default();
    tx.update_one(
        collection,
        doc! {"_id": id},
        doc! {"$setOnInsert": document},
        true,
    )
    .await?;
    Ok(())
}

async fn event_info(tx: &mut Tx, id: &str) -> Result<Option<EventInfo>, MongoError> {
    let found: Option<EventDoc> = tx.find_one(EVENTS, doc! {"_id": id}).await?;
    Ok(found.map(|e| EventInfo {
        name: e.name,
        starts: DateTime::from_timestamp(e.start_date, 0).unwrap_or_default(),
    }))
}

/// Applies one event, mailing its fact if `mail`; mirrors `sqlite.rs`.
async fn apply_one(
    tx: &mut Tx,
    event: &DomainEvent,
    mailing: Option<Mailing>,
) -> Result<bus::Outcome, MongoError> {
    let fact = match event {
        DomainEvent::EventCreated(created) => {
            let document = doc! {
                "_id": &created.id,
                "name": &created.name,
                "start_date": created.start_date.timestamp(),
            };
            insert_once(tx, EVENTS, document).await?;
            return Ok(bus::Outcome::Applied);
        }
        DomainEvent::EventBooked(booked) => {
            let Some(event) = event_info(tx, &booked.event_id).await? else {
                return Ok(bus::Outcome::Retry(format!(
                    "event {} is not known yet",
                    booked.event_id
                )));
            };
            let document = doc! {
                "_id": &booked.booking_id,
                "event_id": &booked.event_id,
                "email": &booked.email,
                "seats": i64::from(booked.seats),
            };
            insert_once(tx, BOOKINGS, document).await?;
            Fact::Booked {
                booking_id: booked.booking_id.clone(),
                event,
                seats: booked.seats,
                email: booked.email.clone(),
                guest: booked.user_id.is_empty(),
            }
        }
        DomainEvent::BookingCancelled(cancelled) => {
            let booking: Option<BookingDoc> = tx
                .find_one(BOOKINGS, doc! {"_id": &cancelled.booking_id})
                .await?;
            let Some(booking) = booking else {
                return Ok(bus::Outcome::Retry(format!(
                    "booking {} is not known yet",
                    cancelled.booking_id
                )));
            };
            let Some(event) = event_info(tx, &booking.event_id).await? else {
                return Ok(bus::Outcome::Retry(format!(
                    "event {} is not known yet",
                    booking.event_id
                )));
            };
            Fact::cancellation(
                cancelled.booking_id.clone(),
                event,
                cancelled.seats,
                booking.email,
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
        insert_mail(tx, &mail).await?;
    }
    Ok(bus::Outcome::Applied)
}

/// See [`NotificationStore::apply`].
async fn apply(
    tx: &mut Tx,
    batch: &[Delivered],
    links: &BookingLinks,
) -> Result<(Vec<bus::Outcome>, Vec<contracts::Envelope>), MongoError> {
    let since: Option<Document> = tx.find_one(MAIL_SINCE, doc! {"_id": MAIL_SINCE}).await?;
    let since = since
        .and_then(|d| d.get_i64("at").ok())
        .ok_or_else(|| MongoError::Invalid("the mail_since document is missing".into()))?;
    inbox::apply_once(tx, batch, move |t, received| {
        let mailing = received.mailing(since, links);
        let event = &received.event;
        Box::pin(async move { Ok((apply_one(t, event, mailing).await?, Vec::new())) })
    })
    .await
}

/// See [`NotificationStore::mark_failed`]: 2 s, 4 s, 8 s … 5 minutes after the attempt, as in
/// SQLite.
async fn mark_failed(
    tx: &mut Tx,
    (id, error, permanent): &(&str, &str, bool),
) -> Result<((), Vec<contracts::Envelope>), MongoError> {
    let Some(mail) = tx.find_one::<MailDoc>(MAILS, doc! {"_id": *id}).await? else {
        return Ok(((), Vec::new()));
    };
    let attempts = mail.attempts.saturating_add(1);
    let wait_ms = 1000 * 2_i64.pow(attempts.min(9)).min(300);
    let update = doc! {"$set": {
        "attempts": i64::from(attempts),
        "last_error": *error,
        "status": if *permanent { "failed" } else { "pending" },
        "next_attempt": Utc::now().timestamp_millis() + wait_ms,
    }};
    tx.update_one(MAILS, doc! {"_id": *id}, update, false)
        .await?;
    Ok(((), Vec::new()))
}

#[async_trait]
impl NotificationStore for MongoNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let outcomes = self
            .mongo
            .transaction(&(batch, links), |tx, (batch, links)| {
                Box::pin(apply(tx, batch, links))
            })
            .await?;
        self.committed.notify_waiters();
        Ok(outcomes)
    }

    async fn queue(&self, mail: Mail) -> Result<(), StoreError> {
        self.mongo
            .transaction(&mail, |tx, mail| {
                Box::pin(async move { Ok((insert_mail(tx, mail).await?, Vec::new())) })
            })
            .await?;
        self.committed.notify_waiters();
        Ok(())
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Mail>, StoreError> {
        let now = Utc::now().timestamp_millis();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let filter = doc! {
            "status": "pending",
            "next_attempt": {"$lte": now},
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<MailDoc> = self
            .mongo
            .find(
                MAILS,
                filter,
                doc! {"next_attempt": 1, "order": 1},
                Some(limit),
            )
            .await?;
        let due: Vec<Mail> = found
            .into_iter()
            .map(|d| StoredMail::try_from(d).map(|s| s.mail))
            .collect::<Result<_, _>>()?;
        if due.is_empty() {
            return Ok(due);
        }
        // Each one taken only if it is still due: a replica's sender that took it first
        // changed its next attempt (or the two transactions conflict, and this one, retried,
        // finds that).
        let claimed = self
            .mongo
            .transaction(&(due, now, until), |tx, (due, now, until)| {
                Box::pin(async move {
                    let mut claimed = Vec::with_capacity(due.len());
                    for mail in due {
                        let taken: Option<Document> = tx
                            .find_one_and_update(
                                MAILS,
                                doc! {"_id": &mail.id, "status": "pending", "next_attempt": {"$lte": *now}},
                                doc! {"$set": {"next_attempt": *until}},
                            )
                            .await?;
                        if taken.is_some() {
                            claimed.push(mail.clone());
                        }
                    }
                    Ok((claimed, Vec::new()))
                })
            })
            .await?;
        Ok(claimed)
    }

    async fn mark_sent(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.mongo
            .transaction(ids.as_slice(), |tx, ids| {
                Box::pin(async move {
                    tx.update_many(
                        MAILS,
                        doc! {"_id": {"$in": ids}},
                        doc! {"$set": {"status": "sent"}, "$inc": {"attempts": 1_i64}},
                    )
                    .await?;
                    Ok(((), Vec::new()))
                })
            })
            .await?;
        Ok(())
    }

    async fn mark_failed(&self, id: &str, error: &str, permanent: bool) -> Result<(), StoreError> {
        Ok(self
            .mongo
            .transaction(&(id, error, permanent), |tx, failed| {
                Box::pin(mark_failed(tx, failed))
            })
            .await?)
    }

    async fn mail_queue(&self) -> Result<MailQueue, StoreError> {
        let pending = doc! {"status": "pending"};
        let depth = self.mongo.count(MAILS, pending.clone()).await?;
        let first: Option<Document> = self
            .mongo
            .find_one(MAILS, pending, doc! {"next_attempt": 1})
            .await?;
        let first_due = first
            .and_then(|d| d.get_i64("next_attempt").ok())
            .and_then(DateTime::from_timestamp_millis);
        Ok(MailQueue { depth, first_due })
    }

    async fn mails(&self) -> Result<Vec<StoredMail>, StoreError> {
        let found: Vec<MailDoc> = self
            .mongo
            .find(MAILS, doc! {}, doc! {"order": 1}, None)
            .await?;
        Ok(found
            .into_iter()
            .map(StoredMail::try_from)
            .collect::<Result<_, _>>()?)
    }

    fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
