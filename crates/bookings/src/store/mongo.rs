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
    BookResult, BookingFilter, BookingStore, Delivered, StoreError, availability, booked_event,
    booking_cancelled, cancelled_status, event_json, halls_json, parse_event, parse_halls, refusal,
    replay, sale_status, seats_at,
};
use crate::domain::{
    Availability, BookOutcome, Booking, BookingStatus, NewBooking, Placement, location_key,
    placement,
};
use crate::replay::Rebuilt;

/// Each event's seats, by event id (`_id`).
const INVENTORY: &str = "inventory";
/// Bookings by id (`_id`), with their event's name (it never changes) so that reading one is
/// one lookup; `order` (an ObjectId, increasing) keeps creation order.
const BOOKINGS: &str = "bookings";
/// Idempotency keys (`_id`) with the fingerprint of their request and its answer (JSON).
const IDEMPOTENCY: &str = "idempotency";
/// Locations by [`location_key`] (`_id`): their halls (JSON) once their `locationCreated`
/// came. The document is where an event and its location meet: an event that finds no halls
/// writes it (`$inc` of `waiting`) and a `locationCreated` writes its halls into it, so two
/// such transactions at once conflict and the one retried sees the other's work.
const LOCATIONS: &str = "locations";
/// Events (`_id`) waiting for their location (`location_id`, a location key): their
/// `eventCreated` (JSON) and whether they were cancelled meanwhile.
const WAITING: &str = "waiting_events";

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

impl TryFrom<BookingDoc> for Booking {
    type Error = MongoError;

    fn try_from(d: BookingDoc) -> Result<Booking, MongoError> {
        Ok(Booking {
            id: d.id,
            event_id: d.event_id,
            event_name: d.event_name,
            seats: d.seats,
            date: d.date,
            status: platform::error::stored("booking status", &d.status, BookingStatus::parse)?,
            user_id: d.user_id.unwrap_or_default(),
            email: d.email,
        })
    }
}

#[derive(Deserialize)]
struct LocationDoc {
    halls: Option<String>,
}

#[derive(Deserialize)]
struct WaitingDoc {
    event: String,
    cancelled: bool,
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
                    Collection::new(LOCATIONS),
                    Collection::new(WAITING).index(doc! {"location_id": 1}, false),
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
            let state = match state {
                Some(s) => Some((s.available, sale_status(&s.status)?)),
                None => None,
            };
            (refusal(state), Vec::new())
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
/// `bookingCancelled` (in the trace `trace` names), or `None` when it was not active (nothing
/// changes: seats return exactly once, since a concurrent release of the same booking conflicts
/// with this one and, retried, finds it inactive).
async fn release(
    tx: &mut Tx,
    booking_id: &str,
    reason: CancelReason,
    trace: Option<String>,
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
        trace,
    )))
}

/// Puts an event on sale with `capacity` seats (cancelled already if its `eventCancelled`
/// came while it waited for its location). An event is created once: if it is on sale
/// already, nothing changes.
async fn put_on_sale(
    tx: &mut Tx,
    event_id: &str,
    name: &str,
    capacity: u32,
    cancelled: bool,
) -> Result<(), MongoError> {
    let capacity = i64::from(capacity);
    tx.update_one(
        INVENTORY,
        doc! {"_id": event_id},
        doc! {"$setOnInsert": {
            "name": name,
            "capacity": capacity,
            "available": capacity,
            "status": if cancelled { "cancelled" } else { "active" },
        }},
        true,
    )
    .await?;
    Ok(())
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `mongo::inbox::apply_once`'s business.
async fn apply_one(tx: &mut Tx, delivered: &Delivered) -> Result<Applied, MongoError> {
    match &delivered.event {
        DomainEvent::EventCreated(created) => {
            // An event is created once; another eventCreated for it (a new message id) changes
            // nothing.
            let id = doc! {"_id": &created.id};
            if tx.count(INVENTORY, id.clone()).await? + tx.count(WAITING, id).await? > 0 {
                return Ok((bus::Outcome::Applied, Vec::new()));
            }
            let key = location_key(&created.location_id);
            let halls = match created.capacity {
                Some(_) => None,
                None => {
                    let found: Option<LocationDoc> =
                        tx.find_one(LOCATIONS, doc! {"_id": &key}).await?;
                    found
                        .and_then(|l| l.halls)
                        .map(|j| parse_halls(&j).map_err(MongoError::Invalid))
                        .transpose()?
                }
            };
            match placement(created, halls.as_deref()) {
                Placement::OnSale(capacity) => {
                    put_on_sale(tx, &created.id, &created.name, capacity, false).await?
                }
                Placement::AwaitsLocation => {
                    // See LOCATIONS.
                    tx.update_one(
                        LOCATIONS,
                        doc! {"_id": &key},
                        doc! {"$inc": {"waiting": 1}},
                        true,
                    )
                    .await?;
                    let waiting = doc! {
                        "_id": &created.id,
                        "location_id": &key,
                        "event": event_json(created),
                        "cancelled": false,
                    };
                    tx.insert(WAITING, waiting).await?;
                }
                Placement::Unsellable(why) => return Ok((bus::Outcome::Poison(why), Vec::new())),
            }
            Ok((bus::Outcome::Applied, Vec::new()))
        }
        DomainEvent::LocationCreated(location) => {
            let key = location_key(&location.id);
            let found: Option<LocationDoc> = tx.find_one(LOCATIONS, doc! {"_id": &key}).await?;
            // The first locationCreated's halls win.
            let halls = match found.and_then(|l| l.halls) {
                Some(json) => parse_halls(&json).map_err(MongoError::Invalid)?,
                None => {
                    let json = halls_json(&location.halls);
                    tx.update_one(
                        LOCATIONS,
                        doc! {"_id": &key},
                        doc! {"$set": {"halls": json}},
                        true,
                    )
                    .await?;
                    location.halls.clone()
                }
            };
            let waiting: Vec<WaitingDoc> = tx
                .find(WAITING, doc! {"location_id": &key}, doc! {"_id": 1})
                .await?;
            for w in waiting {
                let event = parse_event(&w.event).map_err(MongoError::Invalid)?;
                if let Some(capacity) = seats_at(&event, &halls) {
                    put_on_sale(tx, &event.id, &event.name, capacity, w.cancelled).await?;
                    tx.db
                        .collection::<Document>(WAITING)
                        .delete_one(doc! {"_id": &event.id})
                        .session(&mut tx.session)
                        .await?;
                }
            }
            Ok((bus::Outcome::Applied, Vec::new()))
        }
        DomainEvent::EventCancelled(cancelled) => {
            // A locationCreated that puts it on sale at the same time writes the same document:
            // one of the two transactions is retried and sees the other's work.
            let waiting = tx
                .update_one(
                    WAITING,
                    doc! {"_id": &cancelled.id},
                    doc! {"$set": {"cancelled": true}},
                    false,
                )
                .await?
                .matched_count;
            if waiting == 1 {
                // It goes on sale cancelled when its location comes; it has no bookings.
                return Ok((bus::Outcome::Applied, Vec::new()));
            }
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
                let trace = delivered.trace.clone();
                let reason = CancelReason::EventCancelled;
                caused.extend(release(tx, &booking.id, reason, trace).await?);
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
    let locations = (rebuilt.locations.iter())
        .map(|l| doc! {"_id": &l.key, "halls": halls_json(&l.halls)})
        .collect();
    tx.insert_many(LOCATIONS, locations).await?;
    let waiting = (rebuilt.waiting.iter())
        .map(|w| {
            doc! {
                "_id": &w.event.id,
                "location_id": location_key(&w.event.location_id),
                "event": event_json(&w.event),
                "cancelled": w.cancelled,
            }
        })
        .collect();
    tx.insert_many(WAITING, waiting).await?;
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
                    let trace = platform::telemetry::traceparent();
                    let cancelled = release(tx, id, CancelReason::Customer, trace).await?;
                    let booking: Option<BookingDoc> =
                        tx.find_one(BOOKINGS, doc! {"_id": id}).await?;
                    Ok((
                        booking.map(Booking::try_from).transpose()?,
                        Vec::from_iter(cancelled),
                    ))
                })
            })
            .await?)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let found: Option<BookingDoc> = self
            .mongo
            .find_one(BOOKINGS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(Booking::try_from).transpose()?)
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
        Ok(found
            .into_iter()
            .map(Booking::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let found: Option<InventoryDoc> = self
            .mongo
            .find_one(INVENTORY, doc! {"_id": event_id}, doc! {})
            .await?;
        let Some(i) = found else {
            return Ok(None);
        };
        let status = sale_status(&i.status).map_err(StoreError::from)?;
        Ok(Some(availability(
            event_id.to_owned(),
            i.capacity,
            i.available,
            status,
        )))
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
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
