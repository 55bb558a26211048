use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mongo::bson::oid::ObjectId;
use mongo::bson::{Document, doc};
use mongo::{Collection, Mongo, MongoError, MongoUnit, Options, Tx};
use serde::Deserialize;
use tokio::sync::Notify;

use super::{Delivered, MailQueue, MailStatus, NotificationStore, StoreError, StoredMail, now};
use crate::domain::rules::{self, Command, Mailer};
use crate::domain::unit::{Attempt, KnownBooking, UnitOfWork};
use crate::domain::{BookingLinks, EventInfo, Mail};

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
    #[serde(rename = "_id")]
    id: String,
    event_id: String,
    email: String,
    seats: u32,
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
}

impl MongoNotificationStore {
    /// Prepares the store without connecting; see [`Mongo::open`].
    pub fn connect(url: &str) -> Result<Self, MongoError> {
        // Written once, by the first start that reaches the database (less a minute for clocks).
        let since = Utc::now().timestamp() - 60;
        let mails = Collection::new(MAILS)
            .index(doc! {"status": 1, "next_attempt": 1}, false)
            .index(doc! {"order": 1}, false);
        let options = Options {
            service: "notifications",
            collections: vec![
                Collection::new(EVENTS),
                Collection::new(BOOKINGS),
                mails,
                Collection::new(MAIL_SINCE),
            ],
            seeds: vec![(MAIL_SINCE, doc! {"_id": MAIL_SINCE, "at": since})],
        };
        Ok(Self {
            mongo: Mongo::open(url, options)?,
        })
    }

    /// Creates the collections and indexes now rather than on first use.
    pub async fn migrate(&self) -> Result<(), MongoError> {
        self.mongo.migrate().await
    }
}

/// Inserts `document` unless one with its `_id` exists.
async fn insert_once(tx: &mut Tx, collection: &str, document: Document) -> Result<(), MongoError> {
    let id = document.get("_id").cloned().unwrap_or_default();
    let insert = doc! {"$setOnInsert": document};
    tx.update_one(collection, doc! {"_id": id}, insert, true)
        .await?;
    Ok(())
}

impl UnitOfWork for MongoUnit<'_> {
    async fn event(&mut self, id: &str) -> Result<Option<EventInfo>, MongoError> {
        let found: Option<EventDoc> = self.tx.find_one(EVENTS, doc! {"_id": id}).await?;
        Ok(found.map(|e| EventInfo::stored(e.name, e.start_date)))
    }

    async fn learn_event(&mut self, id: &str, event: &EventInfo) -> Result<(), MongoError> {
        let start_date = event.starts.timestamp();
        let document = doc! {"_id": id, "name": &event.name, "start_date": start_date};
        insert_once(self.tx, EVENTS, document).await
    }

    async fn booking(&mut self, id: &str) -> Result<Option<KnownBooking>, MongoError> {
        let found: Option<BookingDoc> = self.tx.find_one(BOOKINGS, doc! {"_id": id}).await?;
        Ok(found.map(
            |BookingDoc {
                 id,
                 event_id,
                 email,
                 seats,
             }| KnownBooking {
                id: id.into(),
                event_id: event_id.into(),
                email,
                seats,
            },
        ))
    }

    async fn learn_booking(&mut self, booking: &KnownBooking) -> Result<(), MongoError> {
        let document = doc! {
            "_id": booking.id.as_str(),
            "event_id": booking.event_id.as_str(),
            "email": &booking.email,
            "seats": i64::from(booking.seats),
        };
        insert_once(self.tx, BOOKINGS, document).await
    }

    async fn queue_mail(&mut self, mail: &Mail, due: i64) -> Result<(), MongoError> {
        let queued = doc! {
            "_id": &mail.id,
            "order": ObjectId::new(),
            "recipient": &mail.to,
            "subject": &mail.subject,
            "text": &mail.text,
            "html": &mail.html,
            "trace": &mail.trace,
            "status": MailStatus::Pending.as_str(),
            "attempts": 0_i64,
            "next_attempt": due,
        };
        insert_once(self.tx, MAILS, queued).await
    }

    async fn due(&mut self, now: i64, limit: usize) -> Result<Vec<Mail>, MongoError> {
        let filter = doc! {"status": "pending", "next_attempt": {"$lte": now}};
        let tx = &mut *self.tx;
        let mut cursor = (tx.db.collection::<MailDoc>(MAILS).find(filter))
            .sort(doc! {"next_attempt": 1, "order": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .session(&mut tx.session)
            .await?;
        let mut due = Vec::new();
        while cursor.advance(&mut tx.session).await? {
            due.push(StoredMail::try_from(cursor.deserialize_current()?)?.mail);
        }
        Ok(due)
    }

    async fn take(
        &mut self,
        ids: &[String],
        now: i64,
        until: i64,
    ) -> Result<Vec<String>, MongoError> {
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let due = doc! {"_id": id, "status": "pending", "next_attempt": {"$lte": now}};
            let take = doc! {"$set": {"next_attempt": until}};
            let updated = self.tx.update_one(MAILS, due, take, false).await?;
            if updated.modified_count == 1 {
                taken.push(id.clone());
            }
        }
        Ok(taken)
    }

    async fn attempts(&mut self, id: &str) -> Result<Option<u32>, MongoError> {
        let found: Option<MailDoc> = self.tx.find_one(MAILS, doc! {"_id": id}).await?;
        Ok(found.map(|mail| mail.attempts))
    }

    async fn record_attempt(&mut self, id: &str, attempt: &Attempt<'_>) -> Result<(), MongoError> {
        let mut set = doc! {
            "status": attempt.status.as_str(),
            "attempts": i64::from(attempt.attempts()),
            "next_attempt": attempt.next_attempt,
        };
        if let Some(error) = attempt.error {
            set.insert("last_error", error);
        }
        self.tx
            .update_one(MAILS, doc! {"_id": id}, doc! {"$set": set}, false)
            .await?;
        Ok(())
    }
}

/// See [`NotificationStore::apply`].
async fn apply(
    unit: &mut MongoUnit<'_>,
    (batch, links, now): &(Vec<Delivered>, &BookingLinks, i64),
) -> Result<Vec<bus::Outcome>, MongoError> {
    let since: Option<Document> = (unit.tx)
        .find_one(MAIL_SINCE, doc! {"_id": MAIL_SINCE})
        .await?;
    let since = since
        .and_then(|d| d.get_i64("at").ok())
        .ok_or_else(|| MongoError::Invalid("the mail_since document is missing".into()))?;
    let (links, now) = (*links, *now);
    bus::apply_once(unit, batch, &mut Mailer { links, since, now }).await
}

#[async_trait]
impl NotificationStore for MongoNotificationStore {
    async fn apply(
        &self,
        batch: Vec<Delivered>,
        links: &BookingLinks,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let context = (batch, links, now());
        let outcomes = self
            .mongo
            .transaction(&context, |unit, context| Box::pin(apply(unit, context)))
            .await?;
        self.committed().notify_waiters();
        Ok(outcomes)
    }

    async fn run(&self, command: Command) -> Result<Vec<Mail>, StoreError> {
        // A replica's sender claiming or recording the same mails conflicts with this
        // transaction, which, retried, finds what that one did.
        let context = (command, now());
        Ok(self
            .mongo
            .transaction(&context, |unit, (command, now)| {
                Box::pin(rules::run(unit, command, *now))
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
        let all = self
            .mongo
            .find::<MailDoc>(MAILS, doc! {}, doc! {"order": 1}, None);
        let stored = all.await?.into_iter().map(StoredMail::try_from);
        Ok(stored.collect::<Result<_, _>>()?)
    }

    /// The database's own, which only commits that emit events wake otherwise: this
    /// service's rules emit none.
    fn committed(&self) -> Arc<Notify> {
        self.mongo.committed()
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
