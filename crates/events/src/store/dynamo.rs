use std::sync::Arc;

use async_trait::async_trait;
use contracts::DomainEvent;
use dynamo::aws_sdk_dynamodb::types::AttributeValue;
use dynamo::inbox::{self, Change};
use dynamo::item::{Item, get_m, get_n, get_s, item, n, s};
use dynamo::{Commit, Dynamo, DynamoError, KeyKind, Options, Query, Table, Write, outbox};

use super::{
    EventStore, Page, StoreError, event_cancelled, event_created, location_created, sale_delta,
};
use crate::domain::{Event, EventStatus, Hall, Location, Sales};

const LOCATIONS: &str = "locations";
const EVENTS: &str = "events";
const SALES: &str = "sales";
/// Every event in creation order: partition `all` (always [`ALL`]), sorted by `seq`.
const BY_SEQ: &str = "by_seq";
const BY_NAME: &str = "by_name";
const ALL: &str = "events";

/// The events service's tables in DynamoDB: `<prefix>.events.*`. A location's or event's `seq`
/// is the outbox position of its `locationCreated` / `eventCreated`: drawn in commit order, it
/// is their creation order.
pub struct DynamoEventStore {
    db: Dynamo,
}

impl DynamoEventStore {
    /// Prepares the store without connecting; see [`Dynamo::open`].
    pub fn connect(url: &str) -> Result<Self, DynamoError> {
        let db = Dynamo::open(
            url,
            Options {
                service: "events",
                tables: vec![
                    Table::new(LOCATIONS, ("id", KeyKind::S)),
                    Table::new(EVENTS, ("id", KeyKind::S))
                        .index(BY_SEQ, ("all", KeyKind::S), Some(("seq", KeyKind::N)))
                        .index(BY_NAME, ("name", KeyKind::S), Some(("seq", KeyKind::N))),
                    Table::new(SALES, ("event_id", KeyKind::S)),
                    outbox::table(),
                    inbox::table(),
                ],
            },
        )?;
        Ok(Self { db })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), DynamoError> {
        self.db.create_tables().await
    }

    async fn event_item(&self, id: &str) -> Result<Option<Item>, DynamoError> {
        self.db.get(EVENTS, item([("id", s(id))])).await
    }
}

fn location_item(l: &Location) -> Result<Item, DynamoError> {
    let halls = serde_json::to_string(&l.halls).map_err(|e| DynamoError::Data(e.to_string()))?;
    Ok(item([
        ("id", s(&l.id)),
        ("name", s(&l.name)),
        ("address", s(&l.address)),
        ("country", s(&l.country)),
        ("open_time", n(l.open_time)),
        ("close_time", n(l.close_time)),
        ("halls", s(halls)),
    ]))
}

fn location(i: &Item) -> Result<Location, DynamoError> {
    let halls = get_s(i, "halls")?;
    Ok(Location {
        id: get_s(i, "id")?,
        name: get_s(i, "name")?,
        address: get_s(i, "address")?,
        country: get_s(i, "country")?,
        open_time: get_n(i, "open_time")?,
        close_time: get_n(i, "close_time")?,
        halls: serde_json::from_str::<Vec<Hall>>(&halls)
            .map_err(|e| DynamoError::Data(format!("halls: {e}")))?,
    })
}

fn event(i: &Item) -> Result<Event, DynamoError> {
    Ok(Event {
        id: get_s(i, "id")?,
        name: get_s(i, "name")?,
        duration: get_n(i, "duration")?,
        start_date: get_n(i, "start_date")?,
        end_date: get_n(i, "end_date")?,
        hall: get_s(i, "hall")?,
        capacity: get_n(i, "capacity")?,
        status: platform::error::stored("event status", &get_s(i, "status")?, EventStatus::parse)?,
        // Absent when the event has no limit, as in events stored before there were limits.
        seats_per_customer: match i.get("seats_per_customer") {
            None | Some(AttributeValue::Null(_)) => None,
            Some(_) => Some(get_n(i, "seats_per_customer")?),
        },
        // An event keeps a copy of its location: locations never change.
        location: location(get_m(i, "location")?)?,
    })
}

/// Puts a new location (`location_item`'s), numbered `seq`.
fn put_location(db: &Dynamo, location: &Item, seq: i64) -> Write {
    let mut stored = location.clone();
    stored.insert("seq".into(), n(seq));
    Write::put(db.table(LOCATIONS), stored).when("attribute_not_exists(id)")
}

fn sales(i: &Item) -> Result<Sales, DynamoError> {
    Ok(Sales {
        event_id: get_s(i, "event_id")?,
        seats_sold: get_n(i, "seats_sold")?,
        bookings: get_n(i, "bookings")?,
        cancellations: get_n(i, "cancellations")?,
    })
}

/// What one booking or cancellation adds to its event's sales figures.
fn count_sale(db: &Dynamo, event: &DomainEvent) -> Change {
    let Some((event_id, seats, bookings, cancellations)) = sale_delta(event) else {
        return Change::applied(Vec::new(), Vec::new());
    };
    let add = Write::update(
        db.table(SALES),
        item([("event_id", s(event_id))]),
        "ADD seats_sold :seats, bookings :bookings, cancellations :cancellations",
    )
    .value(":seats", n(seats))
    .value(":bookings", n(bookings))
    .value(":cancellations", n(cancellations));
    Change::applied(vec![add], Vec::new())
}

fn refused(what: &str) -> StoreError {
    DynamoError::Data(what.to_owned()).into()
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        let created = [location_created(&location)];
        let stored = location_item(&location)?;
        let committed = self
            .db
            .commit_numbered(&created, |seq| vec![put_location(&self.db, &stored, seq)])
            .await?;
        match committed {
            Commit::Done => Ok(()),
            Commit::Refused(_) => Err(refused(&format!("location {} exists", location.id))),
        }
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        let found = self.db.get(LOCATIONS, item([("id", s(id))])).await?;
        Ok(found.as_ref().map(location).transpose()?)
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        let mut items = self.db.scan(LOCATIONS).await?;
        items.sort_by_key(|i| get_n::<i64>(i, "seq").unwrap_or(0));
        Ok(items.iter().map(location).collect::<Result<_, _>>()?)
    }

    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError> {
        let mut caused = Vec::new();
        if with_new_location {
            caused.push(location_created(&event.location));
        }
        caused.push(event_created(&event));
        let mut stored = item([
            ("id", s(&event.id)),
            ("all", s(ALL)),
            ("name", s(&event.name)),
            ("duration", n(event.duration)),
            ("start_date", n(event.start_date)),
            ("end_date", n(event.end_date)),
            ("hall", s(&event.hall)),
            ("capacity", n(event.capacity)),
            ("status", s(event.status.as_str())),
        ]);
        if let Some(limit) = event.seats_per_customer {
            stored.insert("seats_per_customer".into(), n(limit));
        }
        let new_location = location_item(&event.location)?;
        stored.insert("location".into(), AttributeValue::M(new_location.clone()));
        let location_known = Write::check(
            self.db.table(LOCATIONS),
            item([("id", s(&event.location.id))]),
        )
        .when("attribute_exists(id)");
        let committed = self
            .db
            .commit_numbered(&caused, |first| {
                let seq = first + caused.len() as i64 - 1;
                let mut stored = stored.clone();
                stored.insert("seq".into(), n(seq));
                let put_event =
                    Write::put(self.db.table(EVENTS), stored).when("attribute_not_exists(id)");
                if with_new_location {
                    vec![put_location(&self.db, &new_location, first), put_event]
                } else {
                    vec![location_known.clone(), put_event]
                }
            })
            .await?;
        match committed {
            Commit::Done => Ok(()),
            Commit::Refused(_) => Err(refused(&format!(
                "event {} exists, or its location {} does not",
                event.id, event.location.id
            ))),
        }
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let cancel = Write::update(
            self.db.table(EVENTS),
            item([("id", s(id))]),
            "SET #status = :cancelled",
        )
        .when("#status = :active")
        .name("#status", "status")
        .value(":cancelled", s(EventStatus::Cancelled.as_str()))
        .value(":active", s(EventStatus::Active.as_str()));
        // Refused when unknown or cancelled already: then nothing changes and nothing is emitted.
        self.db.commit(vec![cancel], &[event_cancelled(id)]).await?;
        Ok(self.event(id).await?)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        Ok(self.event_item(id).await?.as_ref().map(event).transpose()?)
    }

    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError> {
        let query = Query::new("#name = :name")
            .index(BY_NAME)
            .name("#name", "name")
            .value(":name", s(name))
            .limit(1);
        let found = self.db.query(EVENTS, query).await?;
        Ok(found.first().map(event).transpose()?)
    }

    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError> {
        let after = match &page.after {
            None => 0,
            Some(id) => match self.event_item(id).await? {
                Some(i) => get_n::<i64>(&i, "seq")?,
                // After an unknown id comes nothing, as in SQLite.
                None => return Ok(Vec::new()),
            },
        };
        let mut query = Query::new("#all = :all AND seq > :after")
            .index(BY_SEQ)
            .name("#all", "all")
            .value(":all", s(ALL))
            .value(":after", n(after));
        if let Some(limit) = page.limit {
            query = query.limit(limit);
        }
        let found = self.db.query(EVENTS, query).await?;
        Ok(found.iter().map(event).collect::<Result<_, _>>()?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let outcomes = inbox::apply_once(&self.db, &batch, |db, e| {
            let change = count_sale(db, e);
            Box::pin(async move { Ok(change) })
        })
        .await?;
        Ok(outcomes)
    }

    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError> {
        let found = self
            .db
            .get(SALES, item([("event_id", s(event_id))]))
            .await?;
        Ok(found.as_ref().map(sales).transpose()?)
    }

    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError> {
        let figures = self
            .db
            .scan(SALES)
            .await?
            .iter()
            .map(sales)
            .collect::<Result<Vec<_>, _>>()?;
        let keys = figures
            .iter()
            .map(|f| item([("id", s(&f.event_id))]))
            .collect();
        let mut seq = std::collections::HashMap::new();
        for e in self.db.get_many(EVENTS, keys).await? {
            seq.insert(get_s(&e, "id")?, get_n::<i64>(&e, "seq")?);
        }
        let mut figures = figures;
        // Figures of an event this service does not know come first, as in SQLite.
        figures.sort_by_key(|f| (seq.get(&f.event_id).copied(), f.event_id.clone()));
        Ok(figures)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
