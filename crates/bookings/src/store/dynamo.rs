use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contracts::{CancelReason, DomainEvent, Envelope};
use dynamo::inbox::{self, Change};
use dynamo::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use dynamo::{Commit, Dynamo, DynamoError, KeyKind, Options, Query, Table, Write, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, StoreError, availability, booked_event,
    booking_cancelled, cancelled_status, event_json, halls_json, parse_event, parse_halls, refusal,
    replay, sale_status, seats_at,
};
use crate::domain::{
    Availability, BookOutcome, Booking, BookingStatus, NewBooking, Placement, SaleStatus,
    location_key, placement,
};
use crate::replay::Rebuilt;

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
/// Bookings of each signed-in user (guests have no `user_id`, so they stay out of it).
const BY_USER: &str = "by_user";
/// Bookings released per transaction when an event is cancelled: each takes two items (the
/// booking and its outbox entry), plus the inventory, the outbox counter and the inbox record,
/// within DynamoDB's 100.
const RELEASE_CHUNK: usize = 45;

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
        id: get_s(i, "id")?,
        event_id: get_s(i, "event_id")?,
        event_name: get_s(i, "event_name")?,
        seats: get_n(i, "seats")?,
        date: get_n(i, "date")?,
        status: platform::error::stored(
            "booking status",
            &get_s(i, "status")?,
            BookingStatus::parse,
        )?,
        user_id: get_s_opt(i, "user_id")?.unwrap_or_default(),
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
    if !b.user_id.is_empty() {
        stored.insert("user_id".into(), s(&b.user_id));
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

/// Gives `seats` back to the event's inventory.
fn give_back(db: &Dynamo, event_id: &str, seats: u32) -> Write {
    Write::update(
        db.table(INVENTORY),
        event_key(event_id),
        "SET available = available + :seats",
    )
    .value(":seats", n(seats))
}

/// Marks booking `id` released for `reason`, on condition that it is still active: of two
/// releases of one booking only one can commit, so its seats return exactly once.
fn mark_released(db: &Dynamo, id: &str, reason: CancelReason) -> Write {
    Write::update(
        db.table(BOOKINGS),
        item([("id", s(id))]),
        "SET #status = :released",
    )
    .when("#status = :active")
    .name("#status", "status")
    .value(":released", s(cancelled_status(reason).as_str()))
    .value(":active", s(BookingStatus::Active.as_str()))
}

async fn idempotent_answer(
    db: &Dynamo,
    request: &NewBooking,
) -> Result<Option<BookResult>, DynamoError> {
    let Some(idem) = &request.idempotency else {
        return Ok(None);
    };
    let Some(earlier) = db.get(IDEMPOTENCY, item([("id", s(&idem.key))])).await? else {
        return Ok(None);
    };
    let (fingerprint, answer) = (get_s(&earlier, "fingerprint")?, get_s(&earlier, "answer")?);
    replay(idem, &fingerprint, &answer)
        .map(Some)
        .map_err(|e| DynamoError::Data(format!("idempotent answer: {e}")))
}

/// The write that records `outcome` as the answer to the request's idempotency key, on
/// condition that the key has no answer yet.
fn remember(
    db: &Dynamo,
    request: &NewBooking,
    outcome: &BookOutcome,
) -> Result<Option<Write>, DynamoError> {
    let Some(idem) = &request.idempotency else {
        return Ok(None);
    };
    let answer = serde_json::to_string(outcome)
        .map_err(|e| DynamoError::Data(format!("cannot encode an idempotent answer: {e}")))?;
    let record = item([
        ("id", s(&idem.key)),
        ("fingerprint", s(&idem.fingerprint)),
        ("answer", s(answer)),
        ("created_at", n(request.date)),
    ]);
    Ok(Some(
        Write::put(db.table(IDEMPOTENCY), record).when("attribute_not_exists(id)"),
    ))
}

/// The answer of a concurrent request with the same key that was recorded first.
async fn answered_meanwhile(db: &Dynamo, request: &NewBooking) -> Result<BookResult, DynamoError> {
    idempotent_answer(db, request)
        .await?
        .ok_or_else(|| DynamoError::Data("an idempotency record vanished".into()))
}

/// See [`BookingStore::book`]. Reads the event's seats, then takes them in one transaction
/// with the booking, its `eventBooked` and its idempotency record, on condition that the
/// event is still active with enough seats; when a concurrent booking took them first, reads
/// again.
async fn book(db: &Dynamo, request: &NewBooking) -> Result<BookResult, DynamoError> {
    if let Some(earlier) = idempotent_answer(db, request).await? {
        return Ok(earlier);
    }
    let started = Instant::now();
    loop {
        let inventory = db.get(INVENTORY, event_key(&request.event_id)).await?;
        let state = match &inventory {
            Some(i) => Some((
                get_n::<u32>(i, "available")?,
                sale_status(&get_s(i, "status")?)?,
                get_s(i, "name")?,
            )),
            None => None,
        };
        let event_name = match state {
            Some((available, SaleStatus::Active, name)) if available >= request.seats => name,
            refused => {
                let outcome = refusal(refused.map(|(available, status, _)| (available, status)));
                if outcome.is_final()
                    && let Some(record) = remember(db, request, &outcome)?
                    && !db.write(record).await?
                {
                    return answered_meanwhile(db, request).await;
                }
                return Ok(BookResult {
                    outcome,
                    replayed: false,
                });
            }
        };
        let booking = request.booked(event_name);
        let take = Write::update(
            db.table(INVENTORY),
            event_key(&request.event_id),
            "SET available = available - :seats",
        )
        .when("available >= :seats AND #status = :active")
        .name("#status", "status")
        .value(":seats", n(request.seats))
        .value(":active", s("active"));
        let [put, listed] = put_booking(db, &booking);
        let outcome = BookOutcome::Booked { booking };
        let mut writes = vec![take, put, listed];
        const REMEMBERED: usize = 3;
        writes.extend(remember(db, request, &outcome)?);
        match db.commit(writes, &[booked_event(request)]).await? {
            Commit::Done => {
                return Ok(BookResult {
                    outcome,
                    replayed: false,
                });
            }
            Commit::Refused(failed) if failed.contains(&REMEMBERED) => {
                return answered_meanwhile(db, request).await;
            }
            Commit::Refused(failed) if failed.contains(&1) => {
                return Err(DynamoError::Data(format!(
                    "booking {} exists already",
                    request.id
                )));
            }
            // Seats taken or the event cancelled meanwhile: read again.
            Commit::Refused(_) => {
                db.patience(started, "booking")?;
            }
        }
    }
}

/// Cancels active booking `id` for a customer; the booking as it is afterwards.
async fn cancel(db: &Dynamo, id: &str) -> Result<Option<Booking>, DynamoError> {
    let started = Instant::now();
    loop {
        let Some(found) = db.get(BOOKINGS, item([("id", s(id))])).await? else {
            return Ok(None);
        };
        let mut b = booking(&found)?;
        if b.status != BookingStatus::Active {
            return Ok(Some(b));
        }
        let reason = CancelReason::Customer;
        let writes = vec![
            mark_released(db, id, reason),
            give_back(db, &b.event_id, b.seats),
        ];
        let trace = platform::telemetry::traceparent();
        let cancelled = booking_cancelled(id, b.event_id.clone(), b.seats, reason, trace);
        match db.commit(writes, &[cancelled]).await? {
            Commit::Done => {
                b.status = cancelled_status(reason);
                return Ok(Some(b));
            }
            // Released meanwhile (its event was cancelled): read it again.
            Commit::Refused(_) => db.patience(started, "cancelling a booking")?,
        }
    }
}

/// The active bookings of an event, as (id, seats).
async fn active_bookings(db: &Dynamo, event_id: &str) -> Result<Vec<(String, u32)>, DynamoError> {
    let listed = db
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
    for found in db.get_many(BOOKINGS, keys).await? {
        let b = booking(&found)?;
        if b.status == BookingStatus::Active {
            active.push((b.id, b.seats));
        }
    }
    active.sort();
    Ok(active)
}

/// Releases `bookings` of `event_id` because the event was cancelled: the writes and their
/// `bookingCancelled`s (in the trace `trace` names), for one transaction.
fn release_all(
    db: &Dynamo,
    event_id: &str,
    bookings: &[(String, u32)],
    trace: &Option<String>,
) -> (Vec<Write>, Vec<Envelope>) {
    if bookings.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let reason = CancelReason::EventCancelled;
    let seats: u32 = bookings.iter().map(|(_, seats)| seats).sum();
    let mut writes = vec![give_back(db, event_id, seats)];
    let mut caused = Vec::with_capacity(bookings.len());
    for (id, seats) in bookings {
        writes.push(mark_released(db, id, reason));
        let trace = trace.clone();
        caused.push(booking_cancelled(
            id,
            event_id.to_owned(),
            *seats,
            reason,
            trace,
        ));
    }
    (writes, caused)
}

/// Puts an event on sale with `capacity` seats (cancelled already if its `eventCancelled`
/// came while it waited for its location), on condition that it is not on sale yet.
fn put_on_sale(db: &Dynamo, event_id: &str, name: &str, capacity: u32, cancelled: bool) -> Write {
    let status = if cancelled { "cancelled" } else { "active" };
    let stored = item([
        ("event_id", s(event_id)),
        ("name", s(name)),
        ("capacity", n(capacity)),
        ("available", n(capacity)),
        ("status", s(status)),
    ]);
    Write::put(db.table(INVENTORY), stored).when("attribute_not_exists(event_id)")
}

/// The writes that keep `event` waiting for its location `key`.
fn put_waiting(
    db: &Dynamo,
    event: &contracts::EventCreated,
    key: &str,
    cancelled: bool,
) -> [Write; 2] {
    let waiting = item([
        ("event_id", s(&event.id)),
        ("location_id", s(key)),
        ("event", s(event_json(event))),
        ("cancelled", n(u8::from(cancelled))),
    ]);
    let listed = item([("location_id", s(key)), ("event_id", s(&event.id))]);
    [
        Write::put(db.table(WAITING), waiting).when("attribute_not_exists(event_id)"),
        Write::put(db.table(WAITING_AT), listed),
    ]
}

fn location_item(key: &str) -> Item {
    item([("id", s(key))])
}

async fn halls_at(db: &Dynamo, key: &str) -> Result<Option<Vec<contracts::Hall>>, DynamoError> {
    let Some(location) = db.get(LOCATIONS, location_item(key)).await? else {
        return Ok(None);
    };
    let halls = get_s(&location, "halls")?;
    parse_halls(&halls).map(Some).map_err(DynamoError::Data)
}

/// The change an `eventCreated` makes. Keeping an event waiting commits on condition that its
/// location still has no halls: a `locationCreated` writes them before it lists the events
/// waiting, so either it lists this one, or this commit is refused and made again, and then
/// finds the halls.
async fn create_event(
    db: &Dynamo,
    created: &contracts::EventCreated,
) -> Result<Change, DynamoError> {
    // An event is created once; another eventCreated for it (a new message id) changes nothing.
    if db.get(INVENTORY, event_key(&created.id)).await?.is_some()
        || db.get(WAITING, event_key(&created.id)).await?.is_some()
    {
        return Ok(Change::applied(Vec::new(), Vec::new()));
    }
    let key = location_key(&created.location_id);
    let halls = match created.capacity {
        Some(_) => None,
        None => halls_at(db, &key).await?,
    };
    let not_waiting = Write::check(db.table(WAITING), event_key(&created.id))
        .when("attribute_not_exists(event_id)");
    Ok(match placement(created, halls.as_deref()) {
        Placement::OnSale(capacity) => Change::applied(
            vec![
                put_on_sale(db, &created.id, &created.name, capacity, false),
                not_waiting,
            ],
            Vec::new(),
        ),
        Placement::AwaitsLocation => {
            let no_halls = Write::check(db.table(LOCATIONS), location_item(&key))
                .when("attribute_not_exists(halls)");
            let not_on_sale = Write::check(db.table(INVENTORY), event_key(&created.id))
                .when("attribute_not_exists(event_id)");
            let mut writes = Vec::from(put_waiting(db, created, &key, false));
            writes.extend([no_halls, not_on_sale]);
            Change::applied(writes, Vec::new())
        }
        Placement::Unsellable(why) => Change::not_applied(bus::Outcome::Poison(why)),
    })
}

/// The change a `locationCreated` makes: its halls first, on their own (the first
/// `locationCreated` of a location wins), then each event waiting for it on sale, each in a
/// transaction of its own. A crash in between leaves the message unrecorded; its redelivery
/// puts the rest on sale.
async fn create_location(
    db: &Dynamo,
    location: &contracts::LocationCreated,
) -> Result<Change, DynamoError> {
    let key = location_key(&location.id);
    let halls = Write::update(
        db.table(LOCATIONS),
        location_item(&key),
        "SET halls = :halls",
    )
    .when("attribute_not_exists(halls)")
    .value(":halls", s(halls_json(&location.halls)));
    db.write(halls).await?;
    let halls = halls_at(db, &key)
        .await?
        .ok_or_else(|| DynamoError::Data(format!("location {key:?} vanished")))?;
    let started = Instant::now();
    let listed = db
        .query(
            WAITING_AT,
            Query::new("location_id = :key").value(":key", s(&key)),
        )
        .await?;
    for entry in listed {
        let event_id = get_s(&entry, "event_id")?;
        loop {
            let Some(waiting) = db.get(WAITING, event_key(&event_id)).await? else {
                break;
            };
            let event = parse_event(&get_s(&waiting, "event")?).map_err(DynamoError::Data)?;
            let cancelled: u8 = get_n(&waiting, "cancelled")?;
            let Some(capacity) = seats_at(&event, &halls) else {
                break;
            };
            let writes = vec![
                put_on_sale(db, &event.id, &event.name, capacity, cancelled == 1),
                // Unless it was cancelled since it was read.
                Write::delete(db.table(WAITING), event_key(&event.id))
                    .when("cancelled = :cancelled")
                    .value(":cancelled", n(cancelled)),
                Write::delete(
                    db.table(WAITING_AT),
                    item([("location_id", s(&key)), ("event_id", s(&event.id))]),
                ),
            ];
            match db.commit(writes, &[]).await? {
                Commit::Done => break,
                Commit::Refused(_) => db.patience(started, "putting waiting events on sale")?,
            }
        }
    }
    Ok(Change::applied(Vec::new(), Vec::new()))
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `dynamo::inbox::apply_once`'s business.
async fn apply_one(db: &Dynamo, delivered: &Delivered) -> Result<Change, DynamoError> {
    match &delivered.event {
        DomainEvent::EventCreated(created) => create_event(db, created).await,
        DomainEvent::LocationCreated(location) => create_location(db, location).await,
        DomainEvent::EventCancelled(cancelled) => {
            // First, on its own: once the event is cancelled no booking can be taken, so the
            // list read below is complete. Doing it again on a redelivery changes nothing.
            let stop_sales = Write::update(
                db.table(INVENTORY),
                event_key(&cancelled.id),
                "SET #status = :cancelled",
            )
            .when("attribute_exists(event_id)")
            .name("#status", "status")
            .value(":cancelled", s("cancelled"));
            if !db.write(stop_sales).await? {
                if db.get(WAITING, event_key(&cancelled.id)).await?.is_some() {
                    // It goes on sale cancelled when its location comes; it has no bookings.
                    // If its location put it on sale meanwhile, the condition fails and this
                    // change is made again, and then stops its sales above.
                    let mark = Write::update(
                        db.table(WAITING),
                        event_key(&cancelled.id),
                        "SET cancelled = :one",
                    )
                    .when("attribute_exists(event_id)")
                    .value(":one", n(1));
                    return Ok(Change::applied(vec![mark], Vec::new()));
                }
                // Its eventCreated may still be on the way (a broker without global order).
                let why = format!("event {} is not known yet", cancelled.id);
                return Ok(Change::not_applied(bus::Outcome::Retry(why)));
            }
            // More bookings than one transaction holds are released in chunks, each on its own;
            // the last one commits with the inbox record. A crash in between leaves the message
            // unrecorded, and its redelivery releases the rest (each booking only once: the
            // release is conditional on the booking being active).
            let started = Instant::now();
            loop {
                let active = active_bookings(db, &cancelled.id).await?;
                if active.len() <= RELEASE_CHUNK {
                    let (writes, caused) =
                        release_all(db, &cancelled.id, &active, &delivered.trace);
                    return Ok(Change::applied(writes, caused));
                }
                let chunk = &active[..RELEASE_CHUNK];
                let (writes, caused) = release_all(db, &cancelled.id, chunk, &delivered.trace);
                if let Commit::Refused(_) = db.commit(writes, &caused).await? {
                    // A customer cancelled one of them meanwhile: list them again.
                    db.patience(started, "releasing the bookings of a cancelled event")?;
                }
            }
        }
        _ => Ok(Change::applied(Vec::new(), Vec::new())),
    }
}

#[async_trait]
impl BookingStore for DynamoBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        Ok(book(&self.db, &booking).await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        Ok(cancel(&self.db, booking_id).await?)
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
            event_id.to_owned(),
            get_n(&i, "capacity")?,
            get_n(&i, "available")?,
            sale_status(&get_s(&i, "status")?)?,
        )))
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        Ok(inbox::apply_once(&self.db, &batch, |db, e| Box::pin(apply_one(db, e))).await?)
    }

    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        let db = &self.db;
        if db.holds_any(INVENTORY).await? || db.holds_any(BOOKINGS).await? {
            return Err(DynamoError::Data(
                "a replay writes into an empty bookings database only".into(),
            )
            .into());
        }
        let mut writes = Vec::new();
        let mut names = HashMap::new();
        for event in &rebuilt.inventory {
            names.insert(event.event_id.as_str(), event.name.as_str());
            let status = if event.cancelled {
                "cancelled"
            } else {
                "active"
            };
            let stored = item([
                ("event_id", s(&event.event_id)),
                ("name", s(&event.name)),
                ("capacity", n(event.capacity)),
                ("available", n(event.available)),
                ("status", s(status)),
            ]);
            writes.push(Write::put(db.table(INVENTORY), stored));
        }
        for b in &rebuilt.bookings {
            let restored = Booking {
                id: b.id.clone(),
                event_id: b.event_id.clone(),
                event_name: names
                    .get(b.event_id.as_str())
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
                seats: b.seats,
                date: b.date,
                status: b.status,
                user_id: b.user_id.clone().unwrap_or_default(),
                email: b.email.clone(),
            };
            writes.extend(put_booking(db, &restored));
        }
        for location in &rebuilt.locations {
            let stored = item([
                ("id", s(&location.key)),
                ("halls", s(halls_json(&location.halls))),
            ]);
            writes.push(Write::put(db.table(LOCATIONS), stored));
        }
        for w in &rebuilt.waiting {
            let key = location_key(&w.event.location_id);
            writes.extend(put_waiting(db, &w.event, &key, w.cancelled));
        }
        writes.extend(rebuilt.message_ids.iter().map(|id| inbox::record(db, id)));
        // Not one transaction (a replay is larger than DynamoDB's 100 items); it writes into
        // tables nobody serves yet.
        let refused =
            || DynamoError::Data("the bookings database filled up during the replay".into());
        for chunk in writes.chunks(dynamo::MAX_TRANSACTION_ITEMS) {
            if db.commit(chunk.to_vec(), &[]).await? != Commit::Done {
                return Err(refused().into());
            }
        }
        let mut caused = outbox;
        caused.extend(rebuilt.owed.iter().map(|owed| Envelope::new(owed, None)));
        // One item of each transaction is the outbox counter.
        for chunk in caused.chunks(dynamo::MAX_TRANSACTION_ITEMS - 1) {
            db.commit(Vec::new(), chunk).await?;
        }
        Ok(())
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(dynamo::DynamoOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
