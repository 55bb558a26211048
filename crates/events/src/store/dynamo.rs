use std::sync::Arc;

use async_trait::async_trait;
use contracts::DomainEvent;
use dynamo::aws_sdk_dynamodb::types::AttributeValue;
use dynamo::inbox;
use dynamo::item::{Item, get_m, get_n, get_s, item, n, s};
use dynamo::{
    Commit, Deferred, Dynamo, DynamoError, DynamoUnit, KeyKind, Options, Query, Table, Write,
    outbox,
};

use super::{EventStore, Page, StoreError};
use crate::domain::unit::UnitOfWork;
use crate::domain::{Event, EventStatus, Hall, Location, Sales, rules};

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
}

async fn event_item(db: &Dynamo, id: &str) -> Result<Option<Item>, DynamoError> {
    db.get(EVENTS, item([("id", s(id))])).await
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
        id: get_s(i, "id")?.into(),
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
        id: get_s(i, "id")?.into(),
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

fn sales(i: &Item) -> Result<Sales, DynamoError> {
    Ok(Sales {
        event_id: get_s(i, "event_id")?.into(),
        seats_sold: get_n(i, "seats_sold")?,
        bookings: get_n(i, "bookings")?,
        cancellations: get_n(i, "cancellations")?,
    })
}

/// What a unit of the events rules keeps back: each location or event it puts, with the index
/// (among the events the unit emits) of the `locationCreated` / `eventCreated` announcing it,
/// whose outbox position becomes its `seq` when [`create`] commits.
#[derive(Default)]
struct Numbered(Vec<(String, Item, usize)>);

impl Deferred for Numbered {
    /// Nothing: only [`create`] commits a unit that puts something, numbering what it puts.
    fn settle(&mut self, _: &Dynamo, _: &mut Vec<Write>) {
        debug_assert!(self.0.is_empty(), "records to number committed unnumbered");
    }
}

type Unit<'d> = DynamoUnit<'d, Numbered>;

impl UnitOfWork for Unit<'_> {
    async fn insert_location(&mut self, location: &Location) -> Result<(), DynamoError> {
        let stored = location_item(location)?;
        let announced = self.caused.len();
        (self.state.0).push((self.db.table(LOCATIONS), stored, announced));
        Ok(())
    }

    async fn insert_event(&mut self, e: &Event) -> Result<(), DynamoError> {
        let mut stored = item([
            ("id", s(&e.id)),
            ("all", s(ALL)),
            ("name", s(&e.name)),
            ("duration", n(e.duration)),
            ("start_date", n(e.start_date)),
            ("end_date", n(e.end_date)),
            ("hall", s(&e.hall)),
            ("capacity", n(e.capacity)),
            ("status", s(e.status.as_str())),
            ("location", AttributeValue::M(location_item(&e.location)?)),
        ]);
        if let Some(limit) = e.seats_per_customer {
            stored.insert("seats_per_customer".into(), n(limit));
        }
        // A location put in this unit is there; any other must be there already.
        let (locations, location) = (self.db.table(LOCATIONS), item([("id", s(&e.location.id))]));
        let put_here = |(table, put, _): &(String, Item, usize)| {
            *table == locations && put.get("id") == location.get("id")
        };
        if !self.state.0.iter().any(put_here) {
            let known = Write::check(locations, location);
            self.writes.push(known.when("attribute_exists(id)"));
        }
        let announced = self.caused.len();
        (self.state.0).push((self.db.table(EVENTS), stored, announced));
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, DynamoError> {
        event_item(self.db, id)
            .await?
            .as_ref()
            .map(event)
            .transpose()
    }

    /// On condition that it is still active when this unit commits.
    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, DynamoError> {
        let cancel = Write::update(
            self.db.table(EVENTS),
            item([("id", s(id))]),
            "SET #status = :cancelled",
        )
        .when("#status = :active")
        .name("#status", "status")
        .value(":cancelled", s(EventStatus::Cancelled.as_str()))
        .value(":active", s(EventStatus::Active.as_str()));
        self.writes.push(cancel);
        Ok(true)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), DynamoError> {
        let add = Write::update(
            self.db.table(SALES),
            item([("event_id", s(&sale.event_id))]),
            "ADD seats_sold :seats, bookings :bookings, cancellations :cancellations",
        )
        .value(":seats", n(sale.seats_sold))
        .value(":bookings", n(sale.bookings))
        .value(":cancellations", n(sale.cancellations));
        self.writes.push(add);
        Ok(())
    }
}

/// Commits a unit that created locations or events, each numbered with the outbox position of
/// the event announcing it. Refused when one exists already or an event's location does not.
async fn create(unit: Unit<'_>) -> Result<(), StoreError> {
    let Numbered(puts) = &unit.state;
    let committed = unit.db.commit_numbered(&unit.caused, |first| {
        let mut writes = unit.writes.clone();
        writes.extend(puts.iter().map(|(table, stored, announced)| {
            let mut stored = stored.clone();
            stored.insert("seq".into(), n(first + *announced as i64));
            Write::put(table.clone(), stored).when("attribute_not_exists(id)")
        }));
        writes
    });
    match committed.await? {
        Commit::Done => Ok(()),
        Commit::Refused(_) => Err(DynamoError::Data(
            "a location or event exists already, or an event's location does not".into(),
        )
        .into()),
    }
}

#[async_trait]
impl EventStore for DynamoEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        let mut unit = Unit::new(&self.db, Numbered::default());
        rules::create_location(&mut unit, &location).await?;
        create(unit).await
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
        let mut unit = Unit::new(&self.db, Numbered::default());
        rules::create_event(&mut unit, &event, with_new_location).await?;
        create(unit).await
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        // A refused condition means another cancellation came first: the rule, made again,
        // finds the event cancelled and emits nothing.
        let cancel = dynamo::until_committed(&self.db, "cancelling an event", id, |unit, id| {
            Box::pin(rules::cancel_event(unit, id))
        });
        Ok(cancel.await?)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        Ok(event_item(&self.db, id)
            .await?
            .as_ref()
            .map(event)
            .transpose()?)
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
            Some(id) => match event_item(&self.db, id).await? {
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
        let mut rule = rules::CountSales;
        let applied = inbox::apply_each(&self.db, &batch, Numbered::default, &mut rule);
        Ok(applied.await?)
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
        figures.sort_by_key(|f| (seq.get(f.event_id.as_str()).copied(), f.event_id.clone()));
        Ok(figures)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
