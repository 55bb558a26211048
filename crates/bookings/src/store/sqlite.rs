use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use contracts::{CancelReason, DomainEvent, Envelope};
use sqlite::rusqlite::{Connection, OptionalExtension, Row, params};
use sqlite::{Batcher, Db, DbError, Options, inbox, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, StoreError, availability, booked_event,
    booking_cancelled, cancelled_status, event_json, halls_json, parse_event, parse_halls, replay,
    seats_at,
};
use crate::domain::{
    Availability, BookOutcome, Booking, BookingStatus, NewBooking, Placement, SaleStatus, Stock,
    Stocks, location_key, placement, seats_taken, take_seats,
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

const BOOKING_COLUMNS: &str =
    "b.id, b.event_id, i.name, b.seats, b.date, b.status, COALESCE(b.user_id, ''), b.email";

pub struct SqliteBookingStore {
    db: Db,
    bookings: Batcher<BookingRequest, BookResult>,
}

impl SqliteBookingStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![SCHEMA, outbox::MIGRATION, inbox::MIGRATION],
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

fn json_failure(e: serde_json::Error) -> DbError {
    DbError::Internal(format!("cannot encode an idempotent answer: {e}"))
}

/// A request to book and the `eventBooked` it emits if it is taken.
type BookingRequest = (NewBooking, Envelope);

/// The booking transaction for a batch of requests, in arrival order; see
/// [`BookingStore::book`]. Each event's seats are read once, taken in memory, and written back
/// with one conditional update per event, so a flash sale costs one inventory update per batch
/// rather than one per booking. The writer holds the database's write lock for the whole batch,
/// so nothing else changes the seats meanwhile; the update's condition and the table's CHECK
/// would still refuse an oversell, failing the batch (whose requests are then tried one by one).
fn book_batch(conn: &Connection, requests: &[BookingRequest]) -> Result<Vec<BookResult>, DbError> {
    let mut stocks = Stocks::new();
    let mut results = Vec::with_capacity(requests.len());
    for (request, booked) in requests {
        if let Some(idem) = &request.idempotency {
            // Earlier batches' answers, and this batch's so far: each is recorded as it is made.
            let earlier: Option<(String, String)> = conn
                .prepare_cached("SELECT fingerprint, answer FROM idempotency WHERE key = ?1")?
                .query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((fingerprint, answer)) = earlier {
                results.push(replay(idem, &fingerprint, &answer).map_err(json_failure)?);
                continue;
            }
        }
        let stock = match stocks.entry(request.event_id.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(first) => first.insert(stock_of(conn, &request.event_id)?),
        };
        let outcome = match take_seats(stock.as_mut(), request.seats) {
            Err(refused) => refused.into(),
            Ok(event_name) => {
                let customer = &request.customer;
                conn.prepare_cached(
                    "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
                     VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6)",
                )?
                .execute(params![
                    request.id,
                    request.event_id,
                    request.seats,
                    request.date,
                    customer.user_id,
                    customer.email
                ])?;
                outbox::append(conn, booked)?;
                BookOutcome::Booked {
                    booking: request.booked(event_name.to_owned()),
                }
            }
        };
        if let Some(idem) = &request.idempotency
            && outcome.is_final()
        {
            let answer = serde_json::to_string(&outcome).map_err(json_failure)?;
            conn.prepare_cached(
                "INSERT INTO idempotency (key, fingerprint, answer, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![idem.key, idem.fingerprint, answer, request.date])?;
        }
        results.push(BookResult {
            outcome,
            replayed: false,
        });
    }
    for (event_id, taken) in seats_taken(&stocks) {
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

/// An event's seats as they stand, `None` for an event this service does not know.
fn stock_of(conn: &Connection, event_id: &str) -> Result<Option<Stock>, DbError> {
    Ok(conn
        .prepare_cached("SELECT name, available, status FROM inventory WHERE event_id = ?1")?
        .query_row([event_id], |r| {
            let status = sqlite::stored(r, 2, "sale status", SaleStatus::parse)?;
            Ok(Stock::new(
                r.get(0)?,
                r.get(1)?,
                status == SaleStatus::Active,
            ))
        })
        .optional()?)
}

/// Marks one active booking as `status`, gives its seats back and emits `bookingCancelled` in
/// the trace `trace` names. False when it was not active (nothing changes: seats return exactly
/// once).
fn release(
    conn: &Connection,
    booking_id: &str,
    reason: CancelReason,
    trace: Option<String>,
) -> Result<bool, DbError> {
    let status = cancelled_status(reason);
    let released: Option<(String, u32)> = conn
        .prepare_cached(
            "UPDATE bookings SET status = ?1 WHERE id = ?2 AND status = 'active' RETURNING event_id, seats",
        )?
        .query_row(params![status.as_str(), booking_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((event_id, seats)) = released else {
        return Ok(false);
    };
    conn.prepare_cached("UPDATE inventory SET available = available + ?1 WHERE event_id = ?2")?
        .execute(params![seats, event_id])?;
    outbox::append(
        conn,
        &booking_cancelled(booking_id, event_id, seats, reason, trace),
    )?;
    Ok(true)
}

/// Puts an event on sale with `capacity` seats (cancelled already if its `eventCancelled`
/// came while it waited for its location).
fn put_on_sale(
    conn: &Connection,
    event_id: &str,
    name: &str,
    capacity: u32,
    cancelled: bool,
) -> Result<(), DbError> {
    let status = if cancelled { "cancelled" } else { "active" };
    conn.prepare_cached(
        "INSERT INTO inventory (event_id, name, capacity, available, status)
         VALUES (?1, ?2, ?3, ?3, ?4)",
    )?
    .execute(params![event_id, name, capacity, status])?;
    Ok(())
}

fn halls_of(conn: &Connection, key: &str) -> Result<Option<Vec<contracts::Hall>>, DbError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT halls FROM locations WHERE id = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    json.map(|j| parse_halls(&j).map_err(DbError::Internal))
        .transpose()
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `bus::inbox::apply_once`'s business.
fn apply_one(conn: &Connection, delivered: &Delivered) -> Result<bus::Outcome, DbError> {
    match &delivered.event {
        DomainEvent::EventCreated(created) => {
            // An event is created once; another eventCreated for it (a new message id) changes
            // nothing.
            let known = conn
                .prepare_cached(
                    "SELECT 1 FROM inventory WHERE event_id = ?1
                     UNION ALL SELECT 1 FROM waiting_events WHERE event_id = ?1",
                )?
                .exists([&created.id])?;
            if known {
                return Ok(bus::Outcome::Applied);
            }
            let key = location_key(&created.location_id);
            let halls = match created.capacity {
                Some(_) => None,
                None => halls_of(conn, &key)?,
            };
            match placement(created, halls.as_deref()) {
                Placement::OnSale(capacity) => {
                    put_on_sale(conn, &created.id, &created.name, capacity, false)?
                }
                Placement::AwaitsLocation => {
                    conn.prepare_cached(
                        "INSERT INTO waiting_events (event_id, location_id, event) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![created.id, key, event_json(created)])?;
                }
                Placement::Unsellable(why) => return Ok(bus::Outcome::Poison(why)),
            }
            Ok(bus::Outcome::Applied)
        }
        DomainEvent::LocationCreated(location) => {
            let key = location_key(&location.id);
            conn.prepare_cached("INSERT OR IGNORE INTO locations (id, halls) VALUES (?1, ?2)")?
                .execute(params![key, halls_json(&location.halls)])?;
            // The first locationCreated's halls, which may be an earlier message's.
            let halls = halls_of(conn, &key)?.unwrap_or_default();
            let waiting: Vec<(String, bool)> = conn
                .prepare_cached(
                    "SELECT event, cancelled FROM waiting_events WHERE location_id = ?1 ORDER BY event_id",
                )?
                .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (json, cancelled) in waiting {
                let event = parse_event(&json).map_err(DbError::Internal)?;
                if let Some(capacity) = seats_at(&event, &halls) {
                    put_on_sale(conn, &event.id, &event.name, capacity, cancelled)?;
                    conn.prepare_cached("DELETE FROM waiting_events WHERE event_id = ?1")?
                        .execute([&event.id])?;
                }
            }
            Ok(bus::Outcome::Applied)
        }
        DomainEvent::EventCancelled(cancelled) => {
            let waiting = conn
                .prepare_cached("UPDATE waiting_events SET cancelled = 1 WHERE event_id = ?1")?
                .execute([&cancelled.id])?;
            if waiting == 1 {
                // It goes on sale cancelled when its location comes; it has no bookings.
                return Ok(bus::Outcome::Applied);
            }
            let known = conn
                .prepare_cached("SELECT 1 FROM inventory WHERE event_id = ?1")?
                .exists([&cancelled.id])?;
            if !known {
                // Its eventCreated may still be on the way (a broker without global order).
                return Ok(bus::Outcome::Retry(format!(
                    "event {} is not known yet",
                    cancelled.id
                )));
            }
            conn.prepare_cached("UPDATE inventory SET status = 'cancelled' WHERE event_id = ?1")?
                .execute([&cancelled.id])?;
            let active: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM bookings WHERE event_id = ?1 AND status = 'active' ORDER BY seq",
                )?
                .query_map([&cancelled.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for booking_id in active {
                let trace = delivered.trace.clone();
                release(conn, &booking_id, CancelReason::EventCancelled, trace)?;
            }
            Ok(bus::Outcome::Applied)
        }
        _ => Ok(bus::Outcome::Applied),
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
            "INSERT INTO inventory (event_id, name, capacity, available, status) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            event.event_id,
            event.name,
            event.capacity,
            event.available,
            if event.cancelled { "cancelled" } else { "active" }
        ])?;
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
        let booked = booked_event(&booking);
        Ok(self.bookings.call((booking, booked)).await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let id = booking_id.to_owned();
        Ok(self
            .db
            .write(move |c| {
                // The writer runs this in the request's store span.
                let trace = platform::telemetry::traceparent();
                release(c, &id, CancelReason::Customer, trace)?;
                Ok::<_, DbError>(select_booking(c, &id)?)
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
            .write(move |c| bus::inbox::apply_once(c, &batch, apply_one))
            .await?)
    }

    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| restore(c, &rebuilt, &outbox))
            .await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(bus::SqliteOutbox(self.db.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
