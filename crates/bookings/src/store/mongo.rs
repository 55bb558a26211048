use std::sync::Arc;

use async_trait::async_trait;
use contracts::{EventCreated, Hall};
use mongo::bson::oid::ObjectId;
use mongo::bson::{Document, doc};
use mongo::{Collection, Mongo, MongoError, MongoUnit, Options};
use serde::Deserialize;

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, StoreError, availability, event_json,
    halls_json, parse_halls, sale_status, stored_sale_status, waiting,
};
use crate::domain::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use crate::domain::{
    Availability, Booking, BookingId, BookingStatus, EventId, Idempotency, NewBooking, SaleStatus,
    Stock, UserId, rules,
};

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
/// What each customer holds of an event with a limit per customer, by `_id` {event, customer}.
const HOLDINGS: &str = "holdings";
/// Events (`_id`) waiting for their location (`location_id`, a location key): their
/// `eventCreated` (JSON) and whether they were cancelled meanwhile.
const WAITING: &str = "waiting_events";

#[derive(Deserialize)]
struct InventoryDoc {
    name: String,
    capacity: u32,
    available: u32,
    status: String,
    #[serde(default)]
    per_customer: Option<u32>,
}

#[derive(Deserialize)]
struct HoldingDoc {
    seats: u32,
}

#[derive(Deserialize)]
struct BookingDoc {
    #[serde(rename = "_id")]
    id: BookingId,
    event_id: EventId,
    event_name: String,
    seats: u32,
    date: i64,
    status: String,
    user_id: Option<UserId>,
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
            user_id: d.user_id,
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
                    Collection::new(HOLDINGS),
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

fn booking_document(booking: &Booking) -> Document {
    doc! {
        "_id": booking.id.as_str(),
        "order": ObjectId::new(),
        "event_id": booking.event_id.as_str(),
        "event_name": &booking.event_name,
        "seats": i64::from(booking.seats),
        "date": booking.date,
        "status": booking.status.as_str(),
        "user_id": booking.user_id.as_deref(),
        "email": &booking.email,
    }
}

impl UnitOfWork for MongoUnit<'_> {
    async fn claim_key(
        &mut self,
        idem: &Idempotency,
        _: i64,
    ) -> Result<Option<Earlier>, MongoError> {
        // A concurrent request with the same key in another process conflicts with this one on
        // the key's document (record_answer); the one retried finds the answer here.
        let earlier: Option<IdempotencyDoc> = self
            .tx
            .find_one(IDEMPOTENCY, doc! {"_id": &idem.key})
            .await?;
        Ok(earlier.map(|e| Earlier {
            fingerprint: e.fingerprint,
            answer: e.answer,
        }))
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        date: i64,
        answer: Option<&str>,
    ) -> Result<(), MongoError> {
        if let Some(answer) = answer {
            let document = doc! {
                "_id": &idem.key,
                "fingerprint": &idem.fingerprint,
                "answer": answer,
                "created_at": date,
            };
            self.tx.insert(IDEMPOTENCY, document).await?;
        }
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, MongoError> {
        let found: Option<InventoryDoc> =
            self.tx.find_one(INVENTORY, doc! {"_id": event_id}).await?;
        let Some(event) = found else {
            return Ok(None);
        };
        let on_sale = stored_sale_status(&event.status)? == SaleStatus::Active;
        Ok(Some(
            Stock::new(event.name, event.available, on_sale).per_customer(event.per_customer),
        ))
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), MongoError> {
        // A booking committed since this transaction read the seats conflicts with this write,
        // and the transaction is made again; the condition stands guard besides.
        let seats = i64::from(seats);
        let taken = self
            .tx
            .update_one(
                INVENTORY,
                doc! {"_id": event_id, "status": "active", "available": {"$gte": seats}},
                doc! {"$inc": {"available": -seats}},
                false,
            )
            .await?;
        if taken.modified_count != 1 {
            return Err(MongoError::Invalid(format!(
                "the seats of event {event_id} changed under a booking"
            )));
        }
        Ok(())
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), MongoError> {
        self.tx
            .update_one(
                INVENTORY,
                doc! {"_id": event_id},
                doc! {"$inc": {"available": i64::from(seats)}},
                false,
            )
            .await?;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, MongoError> {
        let found: Option<HoldingDoc> = self
            .tx
            .find_one(HOLDINGS, doc! {"_id": holding_id(event_id, customer)})
            .await?;
        Ok(found.map_or(0, |h| h.seats))
    }

    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        _: u32,
        now: u32,
    ) -> Result<(), MongoError> {
        // Two transactions that change one customer's holding conflict on its document, and
        // the one retried reads what the other wrote.
        self.tx
            .update_one(
                HOLDINGS,
                doc! {"_id": holding_id(event_id, customer)},
                doc! {"$set": {"seats": i64::from(now)}},
                true,
            )
            .await?;
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), MongoError> {
        self.tx.insert(BOOKINGS, booking_document(booking)).await
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, MongoError> {
        // Of two releases of one booking at once, one conflicts and, retried, finds it inactive.
        let released: Option<BookingDoc> = self
            .tx
            .find_one_and_update(
                BOOKINGS,
                doc! {"_id": booking_id, "status": "active"},
                doc! {"$set": {"status": status.as_str()}},
            )
            .await?;
        released.map(Booking::try_from).transpose()
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, MongoError> {
        let found: Option<BookingDoc> =
            self.tx.find_one(BOOKINGS, doc! {"_id": booking_id}).await?;
        found.map(Booking::try_from).transpose()
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<BookingId>, MongoError> {
        let active: Vec<BookingDoc> = self
            .tx
            .find(
                BOOKINGS,
                doc! {"event_id": event_id, "status": "active"},
                doc! {"order": 1},
            )
            .await?;
        Ok(active.into_iter().map(|b| b.id).collect())
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, MongoError> {
        let id = doc! {"_id": event_id};
        Ok(self.tx.count(INVENTORY, id.clone()).await? + self.tx.count(WAITING, id).await? > 0)
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, MongoError> {
        let found: Option<LocationDoc> =
            self.tx.find_one(LOCATIONS, doc! {"_id": location}).await?;
        Ok(found
            .and_then(|l| l.halls)
            .map(|j| parse_halls(&j))
            .transpose()?)
    }

    async fn record_halls(
        &mut self,
        location: &str,
        halls: &[Hall],
    ) -> Result<Vec<Hall>, MongoError> {
        // The first locationCreated's halls win.
        if let Some(first) = self.halls(location).await? {
            return Ok(first);
        }
        self.tx
            .update_one(
                LOCATIONS,
                doc! {"_id": location},
                doc! {"$set": {"halls": halls_json(halls)}},
                true,
            )
            .await?;
        Ok(halls.to_vec())
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), MongoError> {
        let capacity = i64::from(sale.capacity);
        self.tx
            .update_one(
                INVENTORY,
                doc! {"_id": sale.event_id},
                doc! {"$setOnInsert": {
                    "name": sale.name,
                    "capacity": capacity,
                    "available": capacity,
                    "status": sale_status(sale.cancelled),
                    "per_customer": sale.seats_per_customer.map(i64::from),
                }},
                true,
            )
            .await?;
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), MongoError> {
        // See LOCATIONS.
        self.tx
            .update_one(
                LOCATIONS,
                doc! {"_id": location},
                doc! {"$inc": {"waiting": 1}},
                true,
            )
            .await?;
        let waiting = doc! {
            "_id": &event.id,
            "location_id": location,
            "event": event_json(event),
            "cancelled": false,
        };
        self.tx.insert(WAITING, waiting).await
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, MongoError> {
        let found: Vec<WaitingDoc> = self
            .tx
            .find(WAITING, doc! {"location_id": location}, doc! {"_id": 1})
            .await?;
        Ok(found
            .iter()
            .map(|w| waiting(&w.event, w.cancelled))
            .collect::<Result<_, _>>()?)
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), MongoError> {
        self.tx.delete_one(WAITING, doc! {"_id": event_id}).await?;
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, MongoError> {
        // A locationCreated that puts it on sale at the same time writes the same document:
        // one of the two transactions is retried and sees the other's work.
        let waiting = self
            .tx
            .update_one(
                WAITING,
                doc! {"_id": event_id},
                doc! {"$set": {"cancelled": true}},
                false,
            )
            .await?;
        Ok(waiting.matched_count == 1)
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, MongoError> {
        // A booking committed after this transaction began conflicts with this update (it took
        // seats from the same document), so active_bookings sees every active booking, and none
        // can be taken after it.
        let known = self
            .tx
            .update_one(
                INVENTORY,
                doc! {"_id": event_id},
                doc! {"$set": {"status": "cancelled"}},
                false,
            )
            .await?;
        Ok(known.matched_count == 1)
    }
}

fn holding_id(event_id: &str, customer: &str) -> Document {
    doc! {"event": event_id, "customer": customer}
}

#[async_trait]
impl BookingStore for MongoBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let booked = rules::booked_event(&booking, platform::telemetry::traceparent());
        let booking = (booking, booked);
        let book = self.mongo.transaction(&booking, |unit, (request, booked)| {
            Box::pin(rules::book(unit, request, booked))
        });
        Ok(book.await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let cancelling = (booking_id, platform::telemetry::traceparent());
        let cancel = self.mongo.transaction(&cancelling, |unit, c| {
            Box::pin(rules::cancel(unit, c.0, c.1.clone()))
        });
        Ok(cancel.await?)
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
            condition.insert("user_id", user_id.into_string());
        }
        if let Some(event_id) = filter.event_id {
            condition.insert("event_id", event_id.into_string());
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
        let status = stored_sale_status(&i.status).map_err(StoreError::from)?;
        Ok(Some(availability(
            event_id.into(),
            i.capacity,
            i.available,
            status,
        )))
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let apply = self.mongo.transaction(batch.as_slice(), |unit, batch| {
            Box::pin(async { bus::apply_once(unit, batch, &mut rules::Inventory).await })
        });
        Ok(apply.await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(mongo::MongoOutbox(self.mongo.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
