use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contracts::{CancelReason, DomainEvent, Envelope};
use dynamo::inbox::{self, Change};
use dynamo::item::{Item, get_n, get_s, get_s_opt, item, n, s};
use dynamo::{Commit, Dynamo, DynamoError, KeyKind, Options, Query, Table, Write, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, StoreError, availability, booked_event,
    booking_cancelled, cancelled_status, refusal, replay,
};
use crate::domain::{Availability, BookOutcome, Booking, BookingStatus, NewBooking};
use crate::replay::Rebuilt;

const INVENTORY: &str = "inventory";
const BOOKINGS: &str = "bookings";
/// The bookings of each event, keyed (event, booking), written in the transaction that takes
/// the booking: read consistently, it lists every booking an `eventCancelled` must release (an
/// index would be only eventually consistent and could miss the latest).
const EVENT_BOOKINGS: &str = "event_bookings";
const IDEMPOTENCY: &str = "idempotency";
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
        // Only this module writes the attribute.
        status: BookingStatus::parse(&get_s(i, "status")?).unwrap_or(BookingStatus::Active),
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
                get_s(i, "status")?,
                get_s(i, "name")?,
            )),
            None => None,
        };
        let event_name = match state {
            Some((available, status, name)) if status == "active" && available >= request.seats => {
                name
            }
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
        let cancelled = booking_cancelled(id, b.event_id.clone(), b.seats, reason);
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
/// `bookingCancelled`s, for one transaction.
fn release_all(
    db: &Dynamo,
    event_id: &str,
    bookings: &[(String, u32)],
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
        caused.push(booking_cancelled(id, event_id.to_owned(), *seats, reason));
    }
    (writes, caused)
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `dynamo::inbox::apply_once`'s business.
async fn apply_one(db: &Dynamo, event: &DomainEvent) -> Result<Change, DynamoError> {
    match event {
        DomainEvent::EventCreated(created) => {
            let Some(capacity) = created.capacity.filter(|c| *c > 0) else {
                let why = format!(
                    "eventCreated {} has no capacity, so its seats cannot be sold",
                    created.id
                );
                return Ok(Change::not_applied(bus::Outcome::Poison(why)));
            };
            // An event is created once; another eventCreated for it (a new message id) changes
            // nothing.
            let create = Write::update(
                db.table(INVENTORY),
                event_key(&created.id),
                "SET #name = if_not_exists(#name, :name), \
                 #capacity = if_not_exists(#capacity, :capacity), \
                 available = if_not_exists(available, :capacity), \
                 #status = if_not_exists(#status, :active)",
            )
            .name("#name", "name")
            .name("#capacity", "capacity")
            .name("#status", "status")
            .value(":name", s(&created.name))
            .value(":capacity", n(capacity))
            .value(":active", s("active"));
            Ok(Change::applied(vec![create], Vec::new()))
        }
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
                    let (writes, caused) = release_all(db, &cancelled.id, &active);
                    return Ok(Change::applied(writes, caused));
                }
                let (writes, caused) = release_all(db, &cancelled.id, &active[..RELEASE_CHUNK]);
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
            &get_s(&i, "status")?,
        )))
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
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
