use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contracts::{Envelope, EventCreated, Hall};
use dynamo::inbox::{self, Committed, DynamoUnit};
use dynamo::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use dynamo::{Deferred, Dynamo, DynamoError, KeyKind, Options, Query, Table, Write, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, StoreError, availability, event_json,
    halls_json, parse_halls, sale_status, stored_sale_status, waiting,
};
use crate::domain::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use crate::domain::{
    Availability, BookOutcome, Booking, BookingId, BookingStatus, Idempotency, NewBooking,
    SaleStatus, Stock, UserId, rules,
};

const INVENTORY: &str = "inventory";
const BOOKINGS: &str = "bookings";
/// The bookings of each event, keyed (event, booking), written in the transaction that takes
/// the booking: read consistently, it lists every booking an `eventCancelled` must release (an
/// index would be only eventually consistent and could miss the latest).
const EVENT_BOOKINGS: &str = "event_bookings";
const IDEMPOTENCY: &str = "idempotency";
/// Locations by [`location_key`] (`id`) with their halls (JSON), from `locationCreated`.
const LOCATIONS: &str = "locations";
/// Events (`event_id`) waiting for their location's halls: `location_id` (a location key),
/// their `eventCreated` (JSON), and `cancelled` (1 if their `eventCancelled` came meanwhile).
const WAITING: &str = "waiting_events";
/// The events waiting at each location, keyed (location, event) and written with
/// [`WAITING`]: read consistently, it lists every event a `locationCreated` must put on sale
/// (an index would be only eventually consistent).
const WAITING_AT: &str = "waiting_at";
/// What each customer holds of an event with a limit per customer, keyed (event, customer).
const HOLDINGS: &str = "holdings";
/// Bookings of each signed-in user (guests have no `user_id`, so they stay out of it).
const BY_USER: &str = "by_user";

/// The bookings service's tables in DynamoDB: `<prefix>.bookings.*`.
pub struct DynamoBookingStore {
    db: Dynamo,
}

impl DynamoBookingStore {
    /// Prepares the store without connecting; see [`Dynamo::open`].
    pub fn connect(url: &str) -> Result<Self, DynamoError> {
        let db = Dynamo::open(
            url,
            Options {
                service: "bookings",
                tables: vec![
                    Table::new(INVENTORY, ("event_id", KeyKind::S)),
                    Table::new(BOOKINGS, ("id", KeyKind::S)).index(
                        BY_USER,
                        ("user_id", KeyKind::S),
                        Some(("id", KeyKind::S)),
                    ),
                    Table::new(EVENT_BOOKINGS, ("event_id", KeyKind::S))
                        .sorted_by(("id", KeyKind::S)),
                    Table::new(IDEMPOTENCY, ("id", KeyKind::S)),
                    Table::new(LOCATIONS, ("id", KeyKind::S)),
                    Table::new(WAITING, ("event_id", KeyKind::S)),
                    Table::new(WAITING_AT, ("location_id", KeyKind::S))
                        .sorted_by(("event_id", KeyKind::S)),
                    Table::new(HOLDINGS, ("event_id", KeyKind::S))
                        .sorted_by(("customer", KeyKind::S)),
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

fn booking(i: &Item) -> Result<Booking, DynamoError> {
    Ok(Booking {
        id: get_s(i, "id")?.into(),
        event_id: get_s(i, "event_id")?.into(),
        event_name: get_s(i, "event_name")?,
        seats: get_n(i, "seats")?,
        date: get_n(i, "date")?,
        status: platform::error::stored(
            "booking status",
            &get_s(i, "status")?,
            BookingStatus::parse,
        )?,
        user_id: get_s_opt(i, "user_id")?.map(UserId::from),
        email: get_s(i, "email")?,
    })
}

/// The writes that store booking `b`: its item and its place in its event's list.
fn put_booking(db: &Dynamo, b: &Booking) -> [Write; 2] {
    let mut stored = item([
        ("id", s(&b.id)),
        ("event_id", s(&b.event_id)),
        ("event_name", s(&b.event_name)),
        ("seats", n(b.seats)),
        ("date", n(b.date)),
        ("status", s(b.status.as_str())),
        ("email", s(&b.email)),
    ]);
    if let Some(user_id) = &b.user_id {
        stored.insert("user_id".into(), s(user_id));
    }
    let listed = item([
        ("event_id", s(&b.event_id)),
        ("id", s(&b.id)),
        ("seats", n(b.seats)),
    ]);
    [
        Write::put(db.table(BOOKINGS), stored).when("attribute_not_exists(id)"),
        Write::put(db.table(EVENT_BOOKINGS), listed),
    ]
}

fn event_key(event_id: &str) -> Item {
    item([("event_id", s(event_id))])
}

/// What a DynamoDB unit of the bookings rules keeps beside its writes: what it changed, so that
/// its own reads see it, and writes to one item merged into one (a transaction may touch an
/// item only once).
#[derive(Default)]
struct Pending {
    /// Seats given back, per event.
    given_back: BTreeMap<String, u32>,
    /// Holdings changed, per (event, customer): (seats as read, seats now).
    holds: BTreeMap<(String, String), (u32, u32)>,
    /// Bookings released in this unit, with their new status.
    released: HashMap<String, BookingStatus>,
    /// Bookings read by `active_bookings`, for the releases that follow.
    read: HashMap<String, Booking>,
    /// Waiting events as `waiting_at` read them: their location and whether they were
    /// cancelled.
    waiting: HashMap<String, (String, bool)>,
    /// An event `event_known` found nowhere, which this unit may create.
    unknown_event: Option<String>,
    placed: Option<Placed>,
}

/// Where this unit put an event it created.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placed {
    OnSale,
    Waiting,
}

type Unit<'d> = DynamoUnit<'d, Pending>;

/// Items a part of a long change (an event's cancellation, a location putting its waiting events
/// on sale) holds before it commits on its own: the next step adds at most four (a release: the
/// booking, its outbox entry, its customer's holding, its event's seats; a waiting event: the
/// inventory and two deletes), and the outbox counter and the inbox record make DynamoDB's 100.
const PART_ITEMS: usize = 90;

impl Deferred for Pending {
    /// Adds the writes held back to the unit's writes, one per item.
    fn settle(&mut self, db: &Dynamo, writes: &mut Vec<Write>) {
        for (event_id, seats) in std::mem::take(&mut self.given_back) {
            writes.push(
                Write::update(
                    db.table(INVENTORY),
                    event_key(&event_id),
                    "SET available = available + :seats",
                )
                .value(":seats", n(seats)),
            );
        }
        for ((event_id, customer), (held, now)) in std::mem::take(&mut self.holds) {
            let stored = item([
                ("event_id", s(&event_id)),
                ("customer", s(&customer)),
                ("seats", n(now)),
            ]);
            // Unless another booking of the customer changed it since it was read.
            writes.push(
                Write::put(db.table(HOLDINGS), stored)
                    .when("attribute_not_exists(seats) OR seats = :held")
                    .value(":held", n(held)),
            );
        }
        // An event created here is created once: not both on sale and waiting.
        if let Some(event_id) = self.unknown_event.take() {
            let other = match self.placed.take() {
                Some(Placed::OnSale) => Some(WAITING),
                Some(Placed::Waiting) => Some(INVENTORY),
                None => None,
            };
            if let Some(table) = other {
                writes.push(
                    Write::check(db.table(table), event_key(&event_id))
                        .when("attribute_not_exists(event_id)"),
                );
            }
        }
    }
}

/// Commits what a long change collected so far, once it fills a transaction; the inbox record
/// waits for the last part. When a part is refused (a customer cancelled one of the bookings
/// meanwhile, a waiting event was cancelled), the message is applied again, and reads what is
/// left to do then.
async fn commit_if_full(unit: &mut Unit<'_>) -> Result<(), DynamoError> {
    let pending = &unit.state;
    let items =
        unit.writes.len() + unit.caused.len() + pending.given_back.len() + pending.holds.len();
    if items >= PART_ITEMS {
        unit.commit_part().await?;
        unit.state.released.clear();
    }
    Ok(())
}

impl UnitOfWork for Unit<'_> {
    async fn claim_key(
        &mut self,
        idem: &Idempotency,
        _: i64,
    ) -> Result<Option<Earlier>, DynamoError> {
        let Some(earlier) = self
            .db
            .get(IDEMPOTENCY, item([("id", s(&idem.key))]))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Earlier {
            fingerprint: get_s(&earlier, "fingerprint")?,
            answer: get_s(&earlier, "answer")?,
        }))
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        date: i64,
        answer: Option<&str>,
    ) -> Result<(), DynamoError> {
        if let Some(answer) = answer {
            // Refused when a concurrent request with the key answered first: the booking is
            // made again, and then finds that answer.
            let record = item([
                ("id", s(&idem.key)),
                ("fingerprint", s(&idem.fingerprint)),
                ("answer", s(answer)),
                ("created_at", n(date)),
            ]);
            let put =
                Write::put(self.db.table(IDEMPOTENCY), record).when("attribute_not_exists(id)");
            self.writes.push(put);
        }
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, DynamoError> {
        let Some(i) = self.db.get(INVENTORY, event_key(event_id)).await? else {
            return Ok(None);
        };
        let on_sale = stored_sale_status(&get_s(&i, "status")?)? == SaleStatus::Active;
        let per_customer = match i.contains_key("per_customer") {
            true => Some(get_n(&i, "per_customer")?),
            false => None,
        };
        let stock = Stock::new(get_s(&i, "name")?, get_n(&i, "available")?, on_sale);
        Ok(Some(stock.per_customer(per_customer)))
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), DynamoError> {
        // Refused when a concurrent booking took the seats or the event was cancelled since
        // they were read: the booking is made again.
        let take = Write::update(
            self.db.table(INVENTORY),
            event_key(event_id),
            "SET available = available - :seats",
        )
        .when("available >= :seats AND #status = :active")
        .name("#status", "status")
        .value(":seats", n(seats))
        .value(":active", s("active"));
        self.writes.push(take);
        Ok(())
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), DynamoError> {
        *self
            .state
            .given_back
            .entry(event_id.to_owned())
            .or_insert(0) += seats;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, DynamoError> {
        let key = (event_id.to_owned(), customer.to_owned());
        if let Some((_, now)) = self.state.holds.get(&key) {
            return Ok(*now);
        }
        let found = self
            .db
            .get(HOLDINGS, holding_key(event_id, customer))
            .await?;
        Ok(match found {
            Some(h) => get_n(&h, "seats")?,
            None => 0,
        })
    }

    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        held: u32,
        now: u32,
    ) -> Result<(), DynamoError> {
        let key = (event_id.to_owned(), customer.to_owned());
        self.state.holds.entry(key).or_insert((held, now)).1 = now;
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), DynamoError> {
        self.writes.extend(put_booking(self.db, booking));
        Ok(())
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, DynamoError> {
        commit_if_full(self).await?;
        let found = match self.state.read.remove(booking_id) {
            Some(read) => Some(read),
            None => self.booking(booking_id).await?,
        };
        let Some(found) = found.filter(|b| b.status == BookingStatus::Active) else {
            return Ok(None);
        };
        // Of two releases of one booking (a customer's and the event's) only one can commit,
        // so its seats return exactly once; the other is made again and finds it inactive.
        let mark = Write::update(
            self.db.table(BOOKINGS),
            item([("id", s(booking_id))]),
            "SET #status = :released",
        )
        .when("#status = :active")
        .name("#status", "status")
        .value(":released", s(status.as_str()))
        .value(":active", s(BookingStatus::Active.as_str()));
        self.writes.push(mark);
        self.state.released.insert(booking_id.to_owned(), status);
        Ok(Some(found))
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, DynamoError> {
        let found = self.db.get(BOOKINGS, item([("id", s(booking_id))])).await?;
        let mut found = found.as_ref().map(booking).transpose()?;
        if let Some(b) = &mut found
            && let Some(status) = self.state.released.get(booking_id)
        {
            b.status = *status;
        }
        Ok(found)
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<BookingId>, DynamoError> {
        let listed = self
            .db
            .query(
                EVENT_BOOKINGS,
                Query::new("event_id = :event").value(":event", s(event_id)),
            )
            .await?;
        let keys = listed
            .iter()
            .map(|l| Ok(item([("id", s(get_s(l, "id")?))])))
            .collect::<Result<Vec<_>, DynamoError>>()?;
        let mut active = Vec::new();
        for found in self.db.get_many(BOOKINGS, keys).await? {
            let b = booking(&found)?;
            if b.status == BookingStatus::Active {
                active.push(b.id.clone());
                self.state.read.insert(b.id.to_string(), b);
            }
        }
        // Booking ids are UUIDv7: oldest first.
        active.sort();
        Ok(active)
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, DynamoError> {
        let known = self.db.get(INVENTORY, event_key(event_id)).await?.is_some()
            || self.db.get(WAITING, event_key(event_id)).await?.is_some();
        if !known {
            self.state.unknown_event = Some(event_id.to_owned());
        }
        Ok(known)
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, DynamoError> {
        halls_at(self.db, location).await
    }

    async fn record_halls(
        &mut self,
        location: &str,
        halls: &[Hall],
    ) -> Result<Vec<Hall>, DynamoError> {
        // On its own, first: an event that goes to wait meanwhile commits on condition that
        // its location has no halls, so it is refused, made again, and finds them; or it
        // committed before, and is listed below.
        let first = Write::update(
            self.db.table(LOCATIONS),
            location_item(location),
            "SET halls = :halls",
        )
        .when("attribute_not_exists(halls)")
        .value(":halls", s(halls_json(halls)));
        self.db.write(first).await?;
        halls_at(self.db, location)
            .await?
            .ok_or_else(|| DynamoError::Data(format!("location {location:?} vanished")))
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), DynamoError> {
        commit_if_full(self).await?;
        let mut stored = item([
            ("event_id", s(sale.event_id)),
            ("name", s(sale.name)),
            ("capacity", n(sale.capacity)),
            ("available", n(sale.capacity)),
            ("status", s(sale_status(sale.cancelled))),
        ]);
        if let Some(limit) = sale.seats_per_customer {
            stored.insert("per_customer".into(), n(limit));
        }
        let put =
            Write::put(self.db.table(INVENTORY), stored).when("attribute_not_exists(event_id)");
        self.writes.push(put);
        self.state.placed = Some(Placed::OnSale);
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), DynamoError> {
        let waiting = item([
            ("event_id", s(&event.id)),
            ("location_id", s(location)),
            ("event", s(event_json(event))),
            ("cancelled", n(0)),
        ]);
        let listed = item([("location_id", s(location)), ("event_id", s(&event.id))]);
        let db = self.db;
        self.writes.extend([
            Write::put(db.table(WAITING), waiting).when("attribute_not_exists(event_id)"),
            Write::put(db.table(WAITING_AT), listed),
            // Unless its location's halls came since they were read (see record_halls).
            Write::check(db.table(LOCATIONS), location_item(location))
                .when("attribute_not_exists(halls)"),
        ]);
        self.state.placed = Some(Placed::Waiting);
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, DynamoError> {
        let listed = self
            .db
            .query(
                WAITING_AT,
                Query::new("location_id = :key").value(":key", s(location)),
            )
            .await?;
        let mut found = Vec::with_capacity(listed.len());
        for entry in listed {
            let event_id = get_s(&entry, "event_id")?;
            let Some(w) = self.db.get(WAITING, event_key(&event_id)).await? else {
                continue;
            };
            let cancelled = get_n::<u8>(&w, "cancelled")? == 1;
            self.state
                .waiting
                .insert(event_id, (location.to_owned(), cancelled));
            found.push(waiting(&get_s(&w, "event")?, cancelled)?);
        }
        found.sort_by(|a, b| a.event.id.cmp(&b.event.id));
        Ok(found)
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), DynamoError> {
        let Some((location, cancelled)) = self.state.waiting.get(event_id).cloned() else {
            return Err(DynamoError::Data(format!(
                "event {event_id} stops waiting unread"
            )));
        };
        let db = self.db;
        self.writes.extend([
            // Unless it was cancelled since it was read: then it is made again, cancelled.
            Write::delete(db.table(WAITING), event_key(event_id))
                .when("cancelled = :cancelled")
                .value(":cancelled", n(u8::from(cancelled))),
            Write::delete(
                db.table(WAITING_AT),
                item([("location_id", s(&location)), ("event_id", s(event_id))]),
            ),
        ]);
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, DynamoError> {
        if self.db.get(WAITING, event_key(event_id)).await?.is_none() {
            return Ok(false);
        }
        // If its location put it on sale meanwhile, the condition fails and the message is
        // applied again: then it is on sale, and stop_sale stops it.
        let mark = Write::update(
            self.db.table(WAITING),
            event_key(event_id),
            "SET cancelled = :one",
        )
        .when("attribute_exists(event_id)")
        .value(":one", n(1));
        self.writes.push(mark);
        Ok(true)
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, DynamoError> {
        // On its own, first: once the event is cancelled no booking can be taken, so the list
        // active_bookings reads next is complete. Doing it again on a redelivery changes nothing.
        let stop = Write::update(
            self.db.table(INVENTORY),
            event_key(event_id),
            "SET #status = :cancelled",
        )
        .when("attribute_exists(event_id)")
        .name("#status", "status")
        .value(":cancelled", s("cancelled"));
        self.db.write(stop).await
    }
}

fn location_item(key: &str) -> Item {
    item([("id", s(key))])
}

async fn halls_at(db: &Dynamo, key: &str) -> Result<Option<Vec<contracts::Hall>>, DynamoError> {
    let Some(location) = db.get(LOCATIONS, location_item(key)).await? else {
        return Ok(None);
    };
    let halls = get_s(&location, "halls")?;
    Ok(Some(parse_halls(&halls)?))
}

fn holding_key(event_id: &str, customer: &str) -> Item {
    item([("event_id", s(event_id)), ("customer", s(customer))])
}

/// Books in a new unit until its writes commit: a refused condition means the seats, the
/// customer's holding or the key's answer moved since they were read, and the rules decide again
/// on what is there now.
async fn book(
    db: &Dynamo,
    request: &NewBooking,
    booked: &Envelope,
) -> Result<BookResult, DynamoError> {
    let started = Instant::now();
    loop {
        let mut unit = Unit::new(db, Pending::default());
        let result = rules::book(&mut unit, request, booked).await?;
        if unit.commit().await? == Committed::Done {
            return Ok(result);
        }
        // A booking id is this request's own: if it is there, an earlier attempt committed
        // although its answer was lost (moto, or a timeout), and that booking is the answer.
        if let Some(found) = db.get(BOOKINGS, item([("id", s(&request.id))])).await? {
            let booking = booking(&found)?;
            return Ok(BookResult {
                outcome: BookOutcome::Booked { booking },
                replayed: false,
            });
        }
        again(db, started, "booking").await?;
    }
}

/// Waits a moment before a change is made again, unless it has tried for too long.
async fn again(db: &Dynamo, started: Instant, what: &str) -> Result<(), DynamoError> {
    db.patience(started, what)?;
    tokio::time::sleep(dynamo::jitter()).await;
    Ok(())
}

#[async_trait]
impl BookingStore for DynamoBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let booked = rules::booked_event(&booking, platform::telemetry::traceparent());
        Ok(book(&self.db, &booking, &booked).await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let cancelling = (booking_id, platform::telemetry::traceparent());
        let cancel =
            dynamo::until_committed(&self.db, "cancelling a booking", &cancelling, |unit, c| {
                Box::pin(rules::cancel(unit, c.0, c.1.clone()))
            });
        Ok(cancel.await?)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let found = self.db.get(BOOKINGS, item([("id", s(id))])).await?;
        Ok(found.as_ref().map(booking).transpose()?)
    }

    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError> {
        let db = &self.db;
        let items = match (&filter.user_id, &filter.event_id) {
            (Some(user), _) => {
                let query = Query::new("user_id = :user")
                    .index(BY_USER)
                    .value(":user", s(user));
                db.query(BOOKINGS, query).await?
            }
            (None, Some(event)) => {
                let listed = db
                    .query(
                        EVENT_BOOKINGS,
                        Query::new("event_id = :event").value(":event", s(event)),
                    )
                    .await?;
                let keys = listed
                    .iter()
                    .map(|l| Ok(item([("id", s(get_s(l, "id")?))])))
                    .collect::<Result<Vec<_>, DynamoError>>()?;
                db.get_many(BOOKINGS, keys).await?
            }
            (None, None) => db.scan(BOOKINGS).await?,
        };
        let mut list = items.iter().map(booking).collect::<Result<Vec<_>, _>>()?;
        if let Some(event) = &filter.event_id {
            list.retain(|b| &b.event_id == event);
        }
        // Booking ids are UUIDv7, so this is booking order.
        list.sort_by(|a, b| (a.date, &a.id).cmp(&(b.date, &b.id)));
        Ok(list)
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let Some(i) = self.db.get(INVENTORY, event_key(event_id)).await? else {
            return Ok(None);
        };
        Ok(Some(availability(
            event_id.into(),
            get_n(&i, "capacity")?,
            get_n(&i, "available")?,
            stored_sale_status(&get_s(&i, "status")?)?,
        )))
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut rules = rules::Inventory;
        Ok(inbox::apply_each(&self.db, &batch, Pending::default, &mut rules).await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
