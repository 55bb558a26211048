use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use contracts::{CancelReason, DomainEvent, Envelope};
use mongo::bson::oid::ObjectId;
use mongo::bson::{Document, doc};
use mongo::inbox::{self, Applied};
use mongo::{Collection, Mongo, MongoError, Options, Tx};
use serde::Deserialize;

use super::{
    BookResult, BookingFilter, BookingStore, StoreError, availability, booked_event,
    booking_cancelled, cancelled_status, refusal, replay,
};
use crate::domain::{Availability, BookOutcome, Booking, BookingStatus, NewBooking};
use crate::replay::Rebuilt;

/// Each event's seats, by event id (`_id`).
const INVENTORY: &str = "inventory";
/// Bookings by id (`_id`), with their event's name (it never changes) so that reading one is
/// one lookup; `order` (an ObjectId, increasing) keeps creation order.
const BOOKINGS: &str = "bookings";
/// Idempotency keys (`_id`) with the fingerprint of their request and its answer (JSON).
const IDEMPOTENCY: &str = "idempotency";

#[derive(Deserialize)]
struct InventoryDoc {
    name: String,
    capacity: u32,
    available: u32,
    status: String,
}

#[derive(Deserialize)]
struct BookingDoc {
    #[serde(rename = "_id")]
    id: String,
    event_id: String,
    event_name: String,
    seats: u32,
    date: i64,
    status: String,
    user_id: Option<String>,
    email: String,
}

impl From<BookingDoc> for Booking {
    fn from(d: BookingDoc) -> Booking {
        Booking {
            id: d.id,
            event_id: d.event_id,
            event_name: d.event_name,
            seats: d.seats,
            date: d.date,
            // Only this module writes the field.
            status: BookingStatus::parse(&d.status).unwrap_or(BookingStatus::Active),
            user_id: d.user_id.unwrap_or_default(),
            email: d.email,
        }
    }
}

#[derive(Deserialize)]
struct IdempotencyDoc {
    fingerprint: String,
    answer: String,
}

/// The bookings service's collections in MongoDB, in the database `<database>_bookings`.
pub struct MongoBookingStore {
    mongo: Mongo,
}

impl MongoBookingStore {
    /// Prepares the store without connecting; see [`Mongo::open`].
    pub fn connect(url: &str) -> Result<Self, MongoError> {
        let mongo = Mongo::open(
            url,
            Options {
                service: "bookings",
                collections: vec![
                    Collection::new(INVENTORY),
                    Collection::new(BOOKINGS)
                        .index(doc! {"event_id": 1, "order": 1}, false)
                        .index(doc! {"user_id": 1, "order": 1}, false)
                        .index(doc! {"order": 1}, false),
                    Collection::new(IDEMPOTENCY),
                ],
                seeds: Vec::new(),
            },
        )?;
        Ok(Self { mongo })
    }

    /// Creates the collections and indexes now rather than on first use.
    pub async fn migrate(&self) -> Result<(), MongoError> {
        self.mongo.migrate().await
    }
}

fn booking_document(booking: &Booking, user_id: Option<&str>) -> Document {
    doc! {
        "_id": &booking.id,
        "order": ObjectId::new(),
        "event_id": &booking.event_id,
        "event_name": &booking.event_name,
        "seats": i64::from(booking.seats),
        "date": booking.date,
        "status": booking.status.as_str(),
        "user_id": user_id,
        "email": &booking.email,
    }
}

fn json_failure(e: serde_json::Error) -> MongoError {
    MongoError::Invalid(format!("cannot encode an idempotent answer: {e}"))
}

/// The booking transaction; see [`BookingStore::book`]. Returns the answer and, if seats were
/// taken, the `eventBooked` to commit with it.
async fn book(
    tx: &mut Tx,
    request: &NewBooking,
) -> Result<(BookResult, Vec<Envelope>), MongoError> {
    if let Some(idem) = &request.idempotency {
        // A concurrent request with the same key in another process conflicts with this one on
        // the key's document below; the one retried finds the answer here.
        let earlier: Option<IdempotencyDoc> =
            tx.find_one(IDEMPOTENCY, doc! {"_id": &idem.key}).await?;
        if let Some(earlier) = earlier {
            let result =
                replay(idem, &earlier.fingerprint, &earlier.answer).map_err(json_failure)?;
            return Ok((result, Vec::new()));
        }
    }

    // Checks and takes the seats in one step.
    let taken: Option<InventoryDoc> = tx
        .find_one_and_update(
            INVENTORY,
            doc! {"_id": &request.event_id, "status": "active", "available": {"$gte": i64::from(request.seats)}},
            doc! {"$inc": {"available": -i64::from(request.seats)}},
        )
        .await?;
    let (outcome, caused) = match taken {
        Some(event) => {
            let customer = &request.customer;
            let booking = request.booked(event.name);
            let document = booking_document(&booking, customer.user_id.as_deref());
            tx.insert(BOOKINGS, document).await?;
            (BookOutcome::Booked { booking }, vec![booked_event(request)])
        }
        None => {
            let state: Option<InventoryDoc> = tx
                .find_one(INVENTORY, doc! {"_id": &request.event_id})
                .await?;
            (refusal(state.map(|s| (s.available, s.status))), Vec::new())
        }
    };

    if let Some(idem) = request.idempotency.as_ref().filter(|_| outcome.is_final()) {
        let answer = serde_json::to_string(&outcome).map_err(json_failure)?;
        let document = doc! {
            "_id": &idem.key,
            "fingerprint": &idem.fingerprint,
            "answer": answer,
            "created_at": request.date,
        };
        tx.insert(IDEMPOTENCY, document).await?;
    }
    let result = BookResult {
        outcome,
        replayed: false,
    };
    Ok((result, caused))
}

/// Marks one active booking as cancelled for `reason` and gives its seats back; its
/// `bookingCancelled`, or `None` when it was not active (nothing changes: seats return exactly
/// once, since a concurrent release of the same booking conflicts with this one and, retried,
/// finds it inactive).
async fn release(
    tx: &mut Tx,
    booking_id: &str,
    reason: CancelReason,
) -> Result<Option<Envelope>, MongoError> {
    let released: Option<BookingDoc> = tx
        .find_one_and_update(
            BOOKINGS,
            doc! {"_id": booking_id, "status": "active"},
            doc! {"$set": {"status": cancelled_status(reason).as_str()}},
        )
        .await?;
    let Some(booking) = released else {
        return Ok(None);
    };
    tx.update_one(
        INVENTORY,
        doc! {"_id": &booking.event_id},
        doc! {"$inc": {"available": i64::from(booking.seats)}},
        false,
    )
    .await?;
    Ok(Some(booking_cancelled(
        booking_id,
        booking.event_id,
        booking.seats,
        reason,
    )))
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `mongo::inbox::apply_once`'s business.
async fn apply_one(tx: &mut Tx, event: &DomainEvent) -> Result<Applied, MongoError> {
    match event {
        DomainEvent::EventCreated(created) => {
            let Some(capacity) = created.capacity.filter(|c| *c > 0) else {
                let why = format!(
                    "eventCreated {} has no capacity, so its seats cannot be sold",
                    created.id
                );
                return Ok((bus::Outcome::Poison(why), Vec::new()));
            };
            // An event is created once; another eventCreated for it (a new message id) changes
            // nothing.
            let capacity = i64::from(capacity);
            tx.update_one(
                INVENTORY,
                doc! {"_id": &created.id},
                doc! {"$setOnInsert": {
                    "name": &created.name,
                    "capacity": capacity,
                    "available": capacity,
                    "status": "active",
                }},
                true,
            )
            .await?;
            Ok((bus::Outcome::Applied, Vec::new()))
        }
        DomainEvent::EventCancelled(cancelled) => {
            let known = tx
                .update_one(
                    INVENTORY,
                    doc! {"_id": &cancelled.id},
                    doc! {"$set": {"status": "cancelled"}},
                    false,
                )
                .await?
                .matched_count;
            if known == 0 {
                // Its eventCreated may still be on the way (a broker without global order).
                let why = format!("event {} is not known yet", cancelled.id);
                return Ok((bus::Outcome::Retry(why), Vec::new()));
            }
            // A booking committed after this transaction began conflicts with the update above
            // (it took seats from the same document), so every active booking is seen here,
            // and none can be taken after it.
            let active: Vec<BookingDoc> = tx
                .find(
                    BOOKINGS,
                    doc! {"event_id": &cancelled.id, "status": "active"},
                    doc! {"order": 1},
                )
                .await?;
            let mut caused = Vec::with_capacity(active.len());
            for booking in active {
                caused.extend(release(tx, &booking.id, CancelReason::EventCancelled).await?);
            }
            Ok((bus::Outcome::Applied, caused))
        }
        _ => Ok((bus::Outcome::Applied, Vec::new())),
    }
}

/// See [`BookingStore::restore`]; returns the events to commit into the outbox.
async fn restore(
    tx: &mut Tx,
    (rebuilt, outbox): &(Rebuilt, Vec<Envelope>),
) -> Result<((), Vec<Envelope>), MongoError> {
    if tx.count(INVENTORY, doc! {}).await? + tx.count(BOOKINGS, doc! {}).await? > 0 {
        return Err(MongoError::Invalid(
            "a replay writes into an empty bookings database only".into(),
        ));
    }
    let mut names = HashMap::new();
    let mut inventory = Vec::with_capacity(rebuilt.inventory.len());
    for event in &rebuilt.inventory {
        names.insert(event.event_id.as_str(), event.name.as_str());
        inventory.push(doc! {
            "_id": &event.event_id,
            "name": &event.name,
            "capacity": i64::from(event.capacity),
            "available": i64::from(event.available),
            "status": if event.cancelled { "cancelled" } else { "active" },
        });
    }
    tx.insert_many(INVENTORY, inventory).await?;
    let mut bookings = Vec::with_capacity(rebuilt.bookings.len());
    for b in &rebuilt.bookings {
        let Some(event_name) = names.get(b.event_id.as_str()) else {
            return Err(MongoError::Invalid(format!(
                "booking {} is of event {}, which the rebuilt state does not hold",
                b.id, b.event_id
            )));
        };
        let booking = Booking {
            id: b.id.clone(),
            event_id: b.event_id.clone(),
            event_name: (*event_name).to_owned(),
            seats: b.seats,
            date: b.date,
            status: b.status,
            user_id: String::new(),
            email: b.email.clone(),
        };
        bookings.push(booking_document(&booking, b.user_id.as_deref()));
    }
    tx.insert_many(BOOKINGS, bookings).await?;
    for id in &rebuilt.message_ids {
        if !inbox::seen(tx, id).await? {
            inbox::record(tx, id).await?;
        }
    }
    let mut caused = outbox.clone();
    caused.extend(rebuilt.owed.iter().map(|owed| Envelope::new(owed, None)));
    Ok(((), caused))
}

#[async_trait]
impl BookingStore for MongoBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        Ok(self
            .mongo
            .transaction(&booking, |tx, request| Box::pin(book(tx, request)))
            .await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        Ok(self
            .mongo
            .transaction(booking_id, |tx, id| {
                Box::pin(async move {
                    let cancelled = release(tx, id, CancelReason::Customer).await?;
                    let booking: Option<BookingDoc> =
                        tx.find_one(BOOKINGS, doc! {"_id": id}).await?;
                    Ok((booking.map(Booking::from), Vec::from_iter(cancelled)))
                })
            })
            .await?)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let found: Option<BookingDoc> = self
            .mongo
            .find_one(BOOKINGS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(Booking::from))
    }

    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError> {
        let mut condition = doc! {};
        if let Some(user_id) = filter.user_id {
            condition.insert("user_id", user_id);
        }
        if let Some(event_id) = filter.event_id {
            condition.insert("event_id", event_id);
        }
        let found: Vec<BookingDoc> = self
            .mongo
            .find(BOOKINGS, condition, doc! {"order": 1}, None)
            .await?;
        Ok(found.into_iter().map(Booking::from).collect())
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let found: Option<InventoryDoc> = self
            .mongo
            .find_one(INVENTORY, doc! {"_id": event_id}, doc! {})
            .await?;
        Ok(found.map(|i| availability(event_id.to_owned(), i.capacity, i.available, &i.status)))
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        Ok(self
            .mongo
            .transaction(batch.as_slice(), |tx, batch| {
                Box::pin(inbox::apply_once(tx, batch, |t, e| {
                    Box::pin(apply_one(t, e))
                }))
            })
            .await?)
    }

    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        Ok(self
            .mongo
            .transaction(&(rebuilt, outbox), |tx, state| Box::pin(restore(tx, state)))
            .await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(mongo::MongoOutbox(self.mongo.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
