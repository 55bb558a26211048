use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use contracts::DomainEvent;
use mongo::bson::oid::ObjectId;
use mongo::bson::{Document, doc};
use mongo::{Collection, Mongo, MongoError, MongoUnit, Options};
use serde::Deserialize;

use super::{EventStore, Page, StoreError};
use crate::domain::unit::UnitOfWork;
use crate::domain::{Event, EventStatus, Hall, Location, Sales, rules};

/// Locations by id (`_id`); `order` (an ObjectId, increasing) keeps creation order.
const LOCATIONS: &str = "locations";
/// Events by id (`_id`), each with a copy of its location: locations never change, and an
/// event is then read in one lookup.
const EVENTS: &str = "events";
/// Sales figures by event id (`_id`), from the bookings service's events.
const SALES: &str = "sales";

#[derive(Deserialize)]
struct LocationDoc {
    /// `_id` in the locations collection, `id` in the copy inside an event.
    #[serde(rename = "_id", alias = "id")]
    id: String,
    name: String,
    address: String,
    country: String,
    open_time: u8,
    close_time: u8,
    halls: Vec<Hall>,
}

impl From<LocationDoc> for Location {
    fn from(d: LocationDoc) -> Location {
        Location {
            id: d.id.into(),
            name: d.name,
            address: d.address,
            country: d.country,
            open_time: d.open_time,
            close_time: d.close_time,
            halls: d.halls,
        }
    }
}

#[derive(Deserialize)]
struct EventDoc {
    #[serde(rename = "_id")]
    id: String,
    order: ObjectId,
    name: String,
    duration: u32,
    start_date: i64,
    end_date: i64,
    location: LocationDoc,
    hall: String,
    capacity: u32,
    status: String,
    /// Absent when the event has no limit, as in events stored before there were limits.
    #[serde(default)]
    seats_per_customer: Option<u32>,
}

impl TryFrom<EventDoc> for Event {
    type Error = MongoError;

    fn try_from(d: EventDoc) -> Result<Event, MongoError> {
        Ok(Event {
            id: d.id.into(),
            name: d.name,
            duration: d.duration,
            start_date: d.start_date,
            end_date: d.end_date,
            location: d.location.into(),
            hall: d.hall,
            capacity: d.capacity,
            status: platform::error::stored("event status", &d.status, EventStatus::parse)?,
            seats_per_customer: d.seats_per_customer,
        })
    }
}

#[derive(Deserialize)]
struct SalesDoc {
    #[serde(rename = "_id")]
    event_id: String,
    seats_sold: i64,
    bookings: i64,
    cancellations: i64,
}

impl From<SalesDoc> for Sales {
    fn from(d: SalesDoc) -> Sales {
        Sales {
            event_id: d.event_id.into(),
            seats_sold: d.seats_sold,
            bookings: d.bookings,
            cancellations: d.cancellations,
        }
    }
}

/// The events service's collections in MongoDB, in the database `<database>_events`.
pub struct MongoEventStore {
    mongo: Mongo,
}

impl MongoEventStore {
    /// Prepares the store without connecting; see [`Mongo::open`].
    pub fn connect(url: &str) -> Result<Self, MongoError> {
        let mongo = Mongo::open(
            url,
            Options {
                service: "events",
                collections: vec![
                    Collection::new(LOCATIONS).index(doc! {"order": 1}, false),
                    Collection::new(EVENTS)
                        .index(doc! {"order": 1}, false)
                        .index(doc! {"name": 1, "order": 1}, false),
                    Collection::new(SALES),
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

/// A location's fields, as stored in its own document and in its events' copies.
fn location_fields(l: &Location) -> Result<Document, MongoError> {
    let halls = mongo::bson::to_bson(&l.halls)
        .map_err(|e| MongoError::Invalid(format!("cannot store the halls of {}: {e}", l.id)))?;
    Ok(doc! {
        "name": &l.name,
        "address": &l.address,
        "country": &l.country,
        "open_time": i32::from(l.open_time),
        "close_time": i32::from(l.close_time),
        "halls": halls,
    })
}

impl UnitOfWork for MongoUnit<'_> {
    async fn insert_location(&mut self, l: &Location) -> Result<(), MongoError> {
        let mut document = doc! {"_id": l.id.as_str(), "order": ObjectId::new()};
        document.extend(location_fields(l)?);
        self.tx.insert(LOCATIONS, document).await
    }

    async fn insert_event(&mut self, event: &Event) -> Result<(), MongoError> {
        let mut location = doc! {"id": event.location.id.as_str()};
        location.extend(location_fields(&event.location)?);
        let mut document = doc! {
            "_id": event.id.as_str(),
            "order": ObjectId::new(),
            "name": &event.name,
            "duration": i64::from(event.duration),
            "start_date": event.start_date,
            "end_date": event.end_date,
            "location": location,
            "hall": &event.hall,
            "capacity": i64::from(event.capacity),
            "status": event.status.as_str(),
        };
        if let Some(limit) = event.seats_per_customer {
            document.insert("seats_per_customer", i64::from(limit));
        }
        self.tx.insert(EVENTS, document).await
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, MongoError> {
        let event: Option<EventDoc> = self.tx.find_one(EVENTS, doc! {"_id": id}).await?;
        event.map(Event::try_from).transpose()
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, MongoError> {
        let active = doc! {"_id": id, "status": "active"};
        let cancel = doc! {"$set": {"status": "cancelled"}};
        let changed = self.tx.update_one(EVENTS, active, cancel, false).await?;
        Ok(changed.modified_count == 1)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), MongoError> {
        let add = doc! {"$inc": {
            "seats_sold": sale.seats_sold,
            "bookings": sale.bookings,
            "cancellations": sale.cancellations,
        }};
        let figures = doc! {"_id": sale.event_id.as_str()};
        self.tx.update_one(SALES, figures, add, true).await?;
        Ok(())
    }
}

impl MongoEventStore {
    async fn events_where(
        &self,
        filter: Document,
        limit: Option<i64>,
    ) -> Result<Vec<Event>, MongoError> {
        let found: Vec<EventDoc> = self
            .mongo
            .find(EVENTS, filter, doc! {"order": 1}, limit)
            .await?;
        found.into_iter().map(Event::try_from).collect()
    }

    /// The creation order of the event with this id, if there is one.
    async fn order_of(&self, id: &str) -> Result<Option<ObjectId>, MongoError> {
        let found: Option<EventDoc> = self
            .mongo
            .find_one(EVENTS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(|e| e.order))
    }
}

#[async_trait]
impl EventStore for MongoEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        let create = self.mongo.transaction(&location, |unit, location| {
            Box::pin(rules::create_location(unit, location))
        });
        Ok(create.await?)
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        let found: Option<LocationDoc> = self
            .mongo
            .find_one(LOCATIONS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(Location::from))
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        let found: Vec<LocationDoc> = self
            .mongo
            .find(LOCATIONS, doc! {}, doc! {"order": 1}, None)
            .await?;
        Ok(found.into_iter().map(Location::from).collect())
    }

    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError> {
        let creating = (event, with_new_location);
        let create = self.mongo.transaction(&creating, |unit, (event, new)| {
            Box::pin(rules::create_event(unit, event, *new))
        });
        Ok(create.await?)
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let cancel =
            (self.mongo).transaction(id, |unit, id| Box::pin(rules::cancel_event(unit, id)));
        Ok(cancel.await?)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let found: Option<EventDoc> = self
            .mongo
            .find_one(EVENTS, doc! {"_id": id}, doc! {})
            .await?;
        Ok(found.map(Event::try_from).transpose()?)
    }

    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError> {
        let found: Option<EventDoc> = self
            .mongo
            .find_one(EVENTS, doc! {"name": name}, doc! {"order": 1})
            .await?;
        Ok(found.map(Event::try_from).transpose()?)
    }

    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError> {
        let filter = match &page.after {
            None => doc! {},
            Some(after) => match self.order_of(after).await? {
                Some(order) => doc! {"order": {"$gt": order}},
                // After an unknown id comes nothing, as in SQLite.
                None => return Ok(Vec::new()),
            },
        };
        let limit = page.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        Ok(self.events_where(filter, limit).await?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let apply = self.mongo.transaction(batch.as_slice(), |unit, batch| {
            Box::pin(async { bus::apply_once(unit, batch, &mut rules::CountSales).await })
        });
        Ok(apply.await?)
    }

    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError> {
        let found: Option<SalesDoc> = self
            .mongo
            .find_one(SALES, doc! {"_id": event_id}, doc! {})
            .await?;
        Ok(found.map(Sales::from))
    }

    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError> {
        let sales: Vec<SalesDoc> = self
            .mongo
            .find(SALES, doc! {}, doc! {"_id": 1}, None)
            .await?;
        let ids: Vec<&str> = sales.iter().map(|s| s.event_id.as_str()).collect();
        let events = self.events_where(doc! {"_id": {"$in": ids}}, None).await?;
        // In the events' creation order; figures of an event this service does not know come
        // first, as in SQLite.
        let order: HashMap<String, usize> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e.id.into_string(), i))
            .collect();
        let mut sales: Vec<Sales> = sales.into_iter().map(Sales::from).collect();
        sales.sort_by_key(|s| order.get(s.event_id.as_str()).copied());
        Ok(sales)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(mongo::MongoOutbox(self.mongo.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.mongo.check().await
    }
}
