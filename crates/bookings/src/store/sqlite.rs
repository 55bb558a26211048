use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bus::{SqliteUnit, run_now};
use contracts::{Envelope, EventCreated, Hall};
use sqlite::rusqlite::{Connection, OptionalExtension, Row, params};
use sqlite::{Batcher, Db, DbError, Options, inbox, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, Restore, StoreError, availability,
    event_json, halls_json, parse_halls, sale_status, waiting,
};
use crate::domain::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use crate::domain::{
    Availability, Booking, BookingStatus, Idempotency, NewBooking, SaleStatus, Stock, Stocks,
    location_key, rules, seats_taken, take_in_batch,
};
use crate::replay::Rebuilt;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inventory (
    event_id  TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    capacity  INTEGER NOT NULL CHECK (capacity > 0),
    -- The last line of defence against overselling: no write can take it below zero.
    available INTEGER NOT NULL CHECK (available >= 0 AND available <= capacity),
    status    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL REFERENCES inventory (event_id),
    seats    INTEGER NOT NULL CHECK (seats > 0),
    date     INTEGER NOT NULL,
    status   TEXT NOT NULL,
    user_id  TEXT,
    email    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_by_event ON bookings (event_id, status);
-- Guests have no user id; leaving them out keeps a guest flash sale off this index.
CREATE INDEX IF NOT EXISTS bookings_by_user ON bookings (user_id) WHERE user_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS idempotency (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    answer      TEXT NOT NULL, -- the BookOutcome as JSON
    created_at  INTEGER NOT NULL
);
-- Halls of each location (locationCreated), for events that state no capacity.
CREATE TABLE IF NOT EXISTS locations (
    id    TEXT PRIMARY KEY, -- domain::location_key
    halls TEXT NOT NULL     -- JSON
);
-- Events that wait for their location's halls to know their seats.
CREATE TABLE IF NOT EXISTS waiting_events (
    event_id    TEXT PRIMARY KEY,
    location_id TEXT NOT NULL, -- domain::location_key
    event       TEXT NOT NULL, -- the eventCreated as JSON
    cancelled   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS waiting_by_location ON waiting_events (location_id);";

/// The most seats one customer may hold of an event (`NULL`: no limit), added after the table.
const PER_CUSTOMER: &str = "ALTER TABLE inventory ADD COLUMN per_customer INTEGER";

/// What each customer holds of an event with a limit per customer (see [`Customer::limit_key`]).
///
/// [`Customer::limit_key`]: crate::domain::Customer::limit_key
const HOLDINGS: &str = "
CREATE TABLE IF NOT EXISTS holdings (
    event_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    seats    INTEGER NOT NULL CHECK (seats >= 0),
    PRIMARY KEY (event_id, customer)
) WITHOUT ROWID;";

const BOOKING_COLUMNS: &str =
    "b.id, b.event_id, i.name, b.seats, b.date, b.status, b.user_id, b.email";

pub struct SqliteBookingStore {
    db: Db,
    bookings: Batcher<BookingRequest, BookResult>,
}

impl SqliteBookingStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![
                    SCHEMA,
                    PER_CUSTOMER,
                    HOLDINGS,
                    outbox::MIGRATION,
                    inbox::MIGRATION,
                ],
                ..Options::default()
            },
        )?;
        let bookings = Batcher::new(db.clone(), book_batch);
        Ok(Self { db, bookings })
    }
}

fn booking_row(row: &Row<'_>) -> sqlite::rusqlite::Result<Booking> {
    Ok(Booking {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_name: row.get(2)?,
        seats: row.get(3)?,
        date: row.get(4)?,
        status: sqlite::stored(row, 5, "booking status", BookingStatus::parse)?,
        user_id: row.get(6)?,
        email: row.get(7)?,
    })
}

fn select_booking(conn: &Connection, id: &str) -> sqlite::rusqlite::Result<Option<Booking>> {
    conn.prepare_cached(&format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN inventory i ON i.event_id = b.event_id WHERE b.id = ?1"
    ))?
    .query_row([id], booking_row)
    .optional()
}

/// A request to book and the `eventBooked` it emits if it is taken.
type BookingRequest = (NewBooking, Envelope);

/// The writer's transaction as the bookings rules see it; `state` holds the seats of each event
/// a batch of bookings has read so far.
type Unit<'c> = SqliteUnit<'c, Stocks>;

/// The booking transaction for a batch of requests, in arrival order ([`rules::book`]). Each
/// event's seats are read once, taken in memory, and written back with one conditional update
/// per event, so a flash sale costs one inventory update per batch rather than one per booking.
/// The writer holds the database's write lock for the whole batch, so nothing else changes the
/// seats meanwhile; the update's condition and the table's CHECK would still refuse an
/// oversell, failing the batch (whose requests are then tried one by one).
fn book_batch(conn: &Connection, requests: &[BookingRequest]) -> Result<Vec<BookResult>, DbError> {
    let mut unit = SqliteUnit {
        conn,
        state: Stocks::new(),
    };
    let mut results = Vec::with_capacity(requests.len());
    for (request, booked) in requests {
        results.push(run_now(rules::book(&mut unit, request, booked))??);
    }
    for (event_id, taken) in seats_taken(&unit.state) {
        let updated = conn
            .prepare_cached(
                "UPDATE inventory SET available = available - ?1
                 WHERE event_id = ?2 AND status = 'active' AND available >= ?1",
            )?
            .execute(params![taken, event_id])?;
        if updated != 1 {
            return Err(DbError::Internal(format!(
                "the seats of event {event_id} changed under a booking batch"
            )));
        }
    }
    Ok(results)
}

impl UnitOfWork for Unit<'_> {
    async fn claim_key(&mut self, idem: &Idempotency, _: i64) -> Result<Option<Earlier>, DbError> {
        // Earlier batches' answers, and this batch's so far: each is recorded as it is made.
        Ok(self
            .conn
            .prepare_cached("SELECT fingerprint, answer FROM idempotency WHERE key = ?1")?
            .query_row([&idem.key], |r| {
                Ok(Earlier {
                    fingerprint: r.get(0)?,
                    answer: r.get(1)?,
                })
            })
            .optional()?)
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        date: i64,
        answer: Option<&str>,
    ) -> Result<(), DbError> {
        if let Some(answer) = answer {
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, fingerprint, answer, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![idem.key, idem.fingerprint, answer, date])?;
        }
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, DbError> {
        if let Some(known) = self.state.get(event_id) {
            return Ok(known.clone());
        }
        let stock = self
            .conn
            .prepare_cached(
                "SELECT name, available, status, per_customer FROM inventory WHERE event_id = ?1",
            )?
            .query_row([event_id], |r| {
                let status = sqlite::stored(r, 2, "sale status", SaleStatus::parse)?;
                let stock = Stock::new(r.get(0)?, r.get(1)?, status == SaleStatus::Active);
                Ok(stock.per_customer(r.get(3)?))
            })
            .optional()?;
        self.state.insert(event_id.to_owned(), stock.clone());
        Ok(stock)
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), DbError> {
        // Written back once for the batch, by book_batch.
        take_in_batch(&mut self.state, event_id, seats).map_err(DbError::Internal)
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), DbError> {
        self.conn
            .prepare_cached("UPDATE inventory SET available = available + ?1 WHERE event_id = ?2")?
            .execute(params![seats, event_id])?;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, DbError> {
        Ok(self
            .conn
            .prepare_cached("SELECT seats FROM holdings WHERE event_id = ?1 AND customer = ?2")?
            .query_row([event_id, customer], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        _: u32,
        now: u32,
    ) -> Result<(), DbError> {
        // The writer holds the file's write lock: nothing changed what `held` read.
        self.conn
            .prepare_cached(
                "INSERT INTO holdings (event_id, customer, seats) VALUES (?1, ?2, ?3)
                 ON CONFLICT (event_id, customer) DO UPDATE SET seats = excluded.seats",
            )?
            .execute(params![event_id, customer, now])?;
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                booking.id,
                booking.event_id,
                booking.seats,
                booking.date,
                booking.status.as_str(),
                booking.user_id,
                booking.email
            ])?;
        Ok(())
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, DbError> {
        let before =
            select_booking(self.conn, booking_id)?.filter(|b| b.status == BookingStatus::Active);
        if before.is_some() {
            self.conn
                .prepare_cached("UPDATE bookings SET status = ?1 WHERE id = ?2")?
                .execute(params![status.as_str(), booking_id])?;
        }
        Ok(before)
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, DbError> {
        Ok(select_booking(self.conn, booking_id)?)
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<String>, DbError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM bookings WHERE event_id = ?1 AND status = 'active' ORDER BY seq",
            )?
            .query_map([event_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, DbError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM inventory WHERE event_id = ?1
                 UNION ALL SELECT 1 FROM waiting_events WHERE event_id = ?1",
            )?
            .exists([event_id])?)
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, DbError> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT halls FROM locations WHERE id = ?1")?
            .query_row([location], |r| r.get(0))
            .optional()?;
        Ok(json.map(|j| parse_halls(&j)).transpose()?)
    }

    async fn record_halls(&mut self, location: &str, halls: &[Hall]) -> Result<Vec<Hall>, DbError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO locations (id, halls) VALUES (?1, ?2)")?
            .execute(params![location, halls_json(halls)])?;
        // The first locationCreated's halls, which may be an earlier message's.
        Ok(self.halls(location).await?.unwrap_or_default())
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO inventory (event_id, name, capacity, available, status, per_customer)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
            )?
            .execute(params![
                sale.event_id,
                sale.name,
                sale.capacity,
                sale_status(sale.cancelled),
                sale.seats_per_customer
            ])?;
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), DbError> {
        self.conn
            .prepare_cached(
                "INSERT INTO waiting_events (event_id, location_id, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![event.id, location, event_json(event)])?;
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, DbError> {
        let rows: Vec<(String, bool)> = self
            .conn
            .prepare_cached(
                "SELECT event, cancelled FROM waiting_events WHERE location_id = ?1 ORDER BY event_id",
            )?
            .query_map([location], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(json, cancelled)| waiting(&json, cancelled))
            .collect::<Result<_, _>>()?)
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), DbError> {
        self.conn
            .prepare_cached("DELETE FROM waiting_events WHERE event_id = ?1")?
            .execute([event_id])?;
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, DbError> {
        Ok(self
            .conn
            .prepare_cached("UPDATE waiting_events SET cancelled = 1 WHERE event_id = ?1")?
            .execute([event_id])?
            == 1)
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, DbError> {
        Ok(self
            .conn
            .prepare_cached("UPDATE inventory SET status = 'cancelled' WHERE event_id = ?1")?
            .execute([event_id])?
            == 1)
    }
}

/// See [`BookingStore::restore`].
fn restore(conn: &Connection, rebuilt: &Rebuilt, outbox: &[Envelope]) -> Result<(), DbError> {
    let holds: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM inventory) + (SELECT COUNT(*) FROM bookings)
              + (SELECT COUNT(*) FROM locations) + (SELECT COUNT(*) FROM waiting_events)",
        [],
        |r| r.get(0),
    )?;
    if holds > 0 {
        return Err(DbError::Internal(
            "a replay writes into an empty bookings database only".into(),
        ));
    }
    for event in &rebuilt.inventory {
        conn.prepare_cached(
            "INSERT INTO inventory (event_id, name, capacity, available, status, per_customer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            event.event_id,
            event.name,
            event.capacity,
            event.available,
            sale_status(event.cancelled),
            event.per_customer
        ])?;
    }
    for (event_id, customer, seats) in &rebuilt.holdings {
        conn.prepare_cached(
            "INSERT INTO holdings (event_id, customer, seats) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![event_id, customer, seats])?;
    }
    for location in &rebuilt.locations {
        conn.prepare_cached("INSERT INTO locations (id, halls) VALUES (?1, ?2)")?
            .execute(params![location.key, halls_json(&location.halls)])?;
    }
    for w in &rebuilt.waiting {
        conn.prepare_cached(
            "INSERT INTO waiting_events (event_id, location_id, event, cancelled) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            w.event.id,
            location_key(&w.event.location_id),
            event_json(&w.event),
            w.cancelled
        ])?;
    }
    for b in &rebuilt.bookings {
        conn.prepare_cached(
            "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            b.id,
            b.event_id,
            b.seats,
            b.date,
            b.status.as_str(),
            b.user_id,
            b.email
        ])?;
    }
    for id in &rebuilt.message_ids {
        inbox::first_delivery(conn, id)?;
    }
    for envelope in outbox {
        outbox::append(conn, envelope)?;
    }
    for owed in &rebuilt.owed {
        outbox::append(conn, &Envelope::new(owed, None))?;
    }
    Ok(())
}

#[async_trait]
impl BookingStore for SqliteBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let booked = rules::booked_event(&booking, platform::telemetry::traceparent());
        Ok(self.bookings.call((booking, booked)).await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let id = booking_id.to_owned();
        Ok(self
            .db
            .write(move |conn| {
                // The writer runs this in the request's store span.
                let trace = platform::telemetry::traceparent();
                let mut unit = SqliteUnit {
                    conn,
                    state: Stocks::new(),
                };
                run_now(rules::cancel(&mut unit, &id, trace))?
            })
            .await?)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let id = id.to_owned();
        Ok(self.db.read(move |c| select_booking(c, &id)).await?)
    }

    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                // One statement per filter shape, so each can use its index.
                let condition = match (&filter.user_id, &filter.event_id) {
                    (Some(_), Some(_)) => "b.user_id = ?1 AND b.event_id = ?2",
                    (Some(_), None) => "b.user_id = ?1 AND ?2 IS NULL",
                    (None, Some(_)) => "?1 IS NULL AND b.event_id = ?2",
                    (None, None) => "?1 IS NULL AND ?2 IS NULL",
                };
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {BOOKING_COLUMNS} FROM bookings b JOIN inventory i ON i.event_id = b.event_id
                     WHERE {condition} ORDER BY b.seq"
                ))?;
                let rows = stmt.query_map(params![filter.user_id, filter.event_id], booking_row)?;
                rows.collect()
            })
            .await?)
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let event_id = event_id.to_owned();
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT capacity, available, status FROM inventory WHERE event_id = ?1",
                )?
                .query_row([&event_id], |r| {
                    Ok(availability(
                        event_id.clone(),
                        r.get(0)?,
                        r.get(1)?,
                        sqlite::stored(r, 2, "sale status", SaleStatus::parse)?,
                    ))
                })
                .optional()
            })
            .await?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        Ok(self
            .db
            .write(move |conn| {
                let mut unit = SqliteUnit {
                    conn,
                    state: Stocks::new(),
                };
                run_now(bus::apply_once(&mut unit, &batch, &mut rules::Inventory))?
            })
            .await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(bus::SqliteOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}

#[async_trait]
impl Restore for SqliteBookingStore {
    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| restore(c, &rebuilt, &outbox))
            .await?)
    }
}
