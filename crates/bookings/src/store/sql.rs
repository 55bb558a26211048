//! The bookings service on SQLite and PostgreSQL: one store, its statements written once (see
//! the `sql` crate) — the primitives of the unit of work, the reads, and a replay's restore.
//! The schemas differ in column types; the few statements that differ ask the dialect.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use contracts::{Envelope, EventCreated, Hall};
use sql::{Batcher, Conn, Db, Dialect, Error, Row, SqlUnit, args};
use sqlite::{DbError, Options, inbox, outbox};

use super::{
    BookResult, BookingFilter, BookingStore, Delivered, Restore, StoreError, availability,
    event_json, halls_json, parse_halls, sale_status, waiting,
};
use crate::domain::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use crate::domain::{
    Availability, Booking, BookingId, BookingStatus, Idempotency, NewBooking, SaleStatus, Stock,
    Stocks, UserId, location_key, rules, seats_taken, take_in_batch,
};
use crate::replay::Rebuilt;

const SQLITE_SCHEMA: &str = "
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
const SQLITE_PER_CUSTOMER: &str = "ALTER TABLE inventory ADD COLUMN per_customer INTEGER";

/// What each customer holds of an event with a limit per customer (see [`Customer::limit_key`]).
///
/// [`Customer::limit_key`]: crate::domain::Customer::limit_key
const SQLITE_HOLDINGS: &str = "
CREATE TABLE IF NOT EXISTS holdings (
    event_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    seats    INTEGER NOT NULL CHECK (seats >= 0),
    PRIMARY KEY (event_id, customer)
) WITHOUT ROWID;";

#[cfg(feature = "postgres")]
const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inventory (
    event_id  TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    capacity  BIGINT NOT NULL CHECK (capacity > 0),
    -- The last line of defence against overselling: no write can take it below zero.
    available BIGINT NOT NULL CHECK (available >= 0 AND available <= capacity),
    status    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookings (
    seq      BIGSERIAL PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL REFERENCES inventory (event_id),
    seats    BIGINT NOT NULL CHECK (seats > 0),
    date     BIGINT NOT NULL,
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
    created_at  BIGINT NOT NULL
);
-- Halls of each location (locationCreated), for events that state no capacity. The row is
-- where an event and its location meet: an event that finds no halls writes the row (halls
-- still NULL) and keeps it locked until it commits, so a locationCreated applied at the same
-- time waits and then sees the event waiting, or commits first and is seen by the event.
CREATE TABLE IF NOT EXISTS locations (
    id    TEXT PRIMARY KEY, -- domain::location_key
    halls TEXT              -- JSON; NULL until the locationCreated comes
);
-- Events that wait for their location's halls to know their seats.
CREATE TABLE IF NOT EXISTS waiting_events (
    event_id    TEXT PRIMARY KEY,
    location_id TEXT NOT NULL, -- domain::location_key
    event       TEXT NOT NULL, -- the eventCreated as JSON
    cancelled   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS waiting_by_location ON waiting_events (location_id);
-- The most seats one customer may hold of an event (NULL: no limit).
ALTER TABLE inventory ADD COLUMN IF NOT EXISTS per_customer BIGINT;
-- What each customer holds of an event with a limit (domain::Customer::limit_key).
CREATE TABLE IF NOT EXISTS holdings (
    event_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    seats    BIGINT NOT NULL CHECK (seats >= 0),
    PRIMARY KEY (event_id, customer)
);";

/// The bookings service's tables in a SQLite file, or in PostgreSQL (in the schema `bookings`
/// unless told otherwise).
pub struct SqlBookingStore {
    db: Db,
    bookings: Batcher<BookingRequest, BookResult>,
}

/// A request to book and the `eventBooked` it emits if it is taken.
type BookingRequest = (NewBooking, Envelope);

impl SqlBookingStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let migrations = vec![
            SQLITE_SCHEMA,
            SQLITE_PER_CUSTOMER,
            SQLITE_HOLDINGS,
            outbox::MIGRATION,
            inbox::MIGRATION,
        ];
        let options = Options {
            migrations,
            ..Options::default()
        };
        Ok(Self::on(Db::sqlite(path, options)?))
    }

    /// Prepares the store without connecting; see [`postgres::Pg::connect_lazy`].
    #[cfg(feature = "postgres")]
    pub fn connect(url: &str) -> Result<Self, postgres::PgError> {
        Self::connect_in(url, "bookings")
    }

    /// The same in another schema (`myevents replay` builds the new state beside the old).
    #[cfg(feature = "postgres")]
    pub fn connect_in(url: &str, schema: &str) -> Result<Self, postgres::PgError> {
        let options = postgres::Options {
            schema: schema.into(),
            migrations: vec![
                PG_SCHEMA,
                postgres::outbox::MIGRATION,
                postgres::inbox::MIGRATION,
            ],
            // A flash sale waits on one inventory row: more connections than this only queue in
            // the database instead of in the pool.
            max_connections: 16,
        };
        Ok(Self::on(Db::postgres(url, options)?))
    }

    /// Creates PostgreSQL's tables now rather than on first use.
    #[cfg(feature = "postgres")]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(self.db.migrate().await?)
    }

    fn on(db: Db) -> Self {
        let batches = db.clone();
        let bookings = Batcher::new(move |requests: Arc<[BookingRequest]>| {
            let db = batches.clone();
            async move { sql::write!(&db, Stocks::new(), |unit| book_all(unit, &requests)) }
        });
        Self { db, bookings }
    }
}

/// Books a batch of requests in one transaction, in arrival order ([`rules::book`]). Each
/// event's seats are read (and on PostgreSQL locked) once, taken in memory, and written back
/// with one conditional update per event, so a flash sale costs one inventory update per batch
/// rather than one per booking; the update's condition and the table's CHECK would still refuse
/// an oversell, failing the batch (whose requests are then tried one by one).
async fn book_all<C: Conn>(
    unit: &mut Unit<C>,
    requests: &[BookingRequest],
) -> Result<Vec<BookResult>, Error> {
    let mut results = Vec::with_capacity(requests.len());
    for (request, booked) in requests {
        results.push(rules::book(unit, request, booked).await?);
    }
    write_back(&mut unit.conn, &unit.state).await?;
    Ok(results)
}

#[async_trait]
impl BookingStore for SqlBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let booked = rules::booked_event(&booking, platform::telemetry::traceparent());
        Ok(self.bookings.call((booking, booked)).await?)
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let (id, trace) = (booking_id.to_owned(), platform::telemetry::traceparent());
        Ok(sql::write!(&self.db, Stocks::new(), |unit| rules::cancel(
            unit, &id, trace
        ))?)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        let id = id.to_owned();
        Ok(sql::read!(&self.db, |conn| booking(conn, &id))?)
    }

    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError> {
        Ok(sql::read!(&self.db, |conn| bookings(conn, &filter))?)
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let id = event_id.to_owned();
        Ok(sql::read!(&self.db, |conn| availability_of(conn, &id))?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut rule = rules::Inventory;
        Ok(sql::write!(&self.db, Stocks::new(), |unit| {
            bus::apply_once(unit, &batch, &mut rule)
        })?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        self.db.outbox()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}

#[async_trait]
impl Restore for SqlBookingStore {
    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        Ok(sql::write!(&self.db, (), |unit| restore(
            unit, &rebuilt, outbox
        ))?)
    }
}

/// A transaction as the bookings rules see it; `state` holds the seats of each event a batch of
/// bookings has read (and, on PostgreSQL, locked) so far.
pub type Unit<C> = SqlUnit<C, Stocks>;

const SELECT_BOOKINGS: &str = "SELECT b.id, b.event_id, i.name, b.seats, b.date, b.status,
        b.user_id, b.email
     FROM bookings b JOIN inventory i ON i.event_id = b.event_id";

fn booking_row(row: &Row<'_>) -> Result<Booking, Error> {
    Ok(Booking {
        id: row.text(0)?.into(),
        event_id: row.text(1)?.into(),
        event_name: row.text(2)?,
        seats: row.int(3)?,
        date: row.i64(4)?,
        status: row.stored(5, "booking status", BookingStatus::parse)?,
        user_id: row.opt_text(6)?.map(UserId::from),
        email: row.text(7)?,
    })
}

pub async fn booking(conn: &mut impl Conn, id: &str) -> Result<Option<Booking>, Error> {
    let sql = format!("{SELECT_BOOKINGS} WHERE b.id = $1");
    conn.fetch_optional(&sql, args![id], booking_row).await
}

pub async fn bookings(conn: &mut impl Conn, filter: &BookingFilter) -> Result<Vec<Booking>, Error> {
    // One statement per filter shape, so each can use its index.
    let condition = match (&filter.user_id, &filter.event_id) {
        (Some(_), Some(_)) => "b.user_id = $1 AND b.event_id = $2",
        (Some(_), None) => "b.user_id = $1",
        (None, Some(_)) => "b.event_id = $1",
        (None, None) => "TRUE",
    };
    let sql = format!("{SELECT_BOOKINGS} WHERE {condition} ORDER BY b.seq");
    let given = [filter.user_id.as_deref(), filter.event_id.as_deref()];
    let args: Vec<sql::Arg<'_>> = given.into_iter().flatten().map(sql::Arg::from).collect();
    conn.fetch(&sql, &args, booking_row).await
}

pub async fn availability_of(
    conn: &mut impl Conn,
    event_id: &str,
) -> Result<Option<Availability>, Error> {
    let sql = "SELECT capacity, available, status FROM inventory WHERE event_id = $1";
    conn.fetch_optional(sql, args![event_id], |r| {
        Ok(availability(
            event_id.into(),
            r.int(0)?,
            r.int(1)?,
            r.stored(2, "sale status", SaleStatus::parse)?,
        ))
    })
    .await
}

/// Writes the seats a batch took back, one conditional update per event; the condition and the
/// table's CHECK would still refuse an oversell, failing the batch.
pub async fn write_back(conn: &mut impl Conn, stocks: &Stocks) -> Result<(), Error> {
    for (event_id, taken) in seats_taken(stocks) {
        let updated = conn
            .execute(
                "UPDATE inventory SET available = available - $1
                 WHERE event_id = $2 AND status = 'active' AND available >= $1",
                args![taken, event_id],
            )
            .await?;
        if updated != 1 {
            return Err(Error::Internal(format!(
                "the seats of event {event_id} changed under a booking batch"
            )));
        }
    }
    Ok(())
}

impl<C: Conn> UnitOfWork for Unit<C> {
    async fn claim_key(&mut self, idem: &Idempotency, date: i64) -> Result<Option<Earlier>, Error> {
        // Claimed first: on PostgreSQL a concurrent request with the same key waits here until
        // this transaction ends, then finds the answer instead of booking a second time.
        let claimed = self
            .conn
            .execute(
                "INSERT INTO idempotency (key, fingerprint, answer, created_at)
                 VALUES ($1, $2, '', $3) ON CONFLICT (key) DO NOTHING",
                args![&idem.key, &idem.fingerprint, date],
            )
            .await?;
        if claimed == 1 {
            return Ok(None);
        }
        let sql = "SELECT fingerprint, answer FROM idempotency WHERE key = $1";
        self.conn
            .fetch_optional(sql, args![&idem.key], |r| {
                Ok(Earlier {
                    fingerprint: r.text(0)?,
                    answer: r.text(1)?,
                })
            })
            .await
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        _: i64,
        answer: Option<&str>,
    ) -> Result<(), Error> {
        match answer {
            Some(answer) => {
                let sql = "UPDATE idempotency SET answer = $2 WHERE key = $1";
                self.conn.execute(sql, args![&idem.key, answer]).await?
            }
            None => {
                let sql = "DELETE FROM idempotency WHERE key = $1";
                self.conn.execute(sql, args![&idem.key]).await?
            }
        };
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, Error> {
        if let Some(known) = self.state.get(event_id) {
            return Ok(known.clone());
        }
        // Locked to the commit: concurrent transactions of the event wait here, so nothing
        // changes the seats between this read and the write back.
        let sql = (self.conn.dialect()).locked(
            "SELECT name, available, status, per_customer FROM inventory WHERE event_id = $1",
        );
        let stock = self
            .conn
            .fetch_optional(&sql, args![event_id], |r| {
                let status = r.stored(2, "sale status", SaleStatus::parse)?;
                let stock = Stock::new(r.text(0)?, r.int(1)?, status == SaleStatus::Active);
                Ok(stock.per_customer(r.opt_int(3)?))
            })
            .await?;
        self.state.insert(event_id.to_owned(), stock.clone());
        Ok(stock)
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), Error> {
        // Written back once for the batch, by write_back.
        take_in_batch(&mut self.state, event_id, seats).map_err(Error::Internal)
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), Error> {
        let sql = "UPDATE inventory SET available = available + $1 WHERE event_id = $2";
        self.conn.execute(sql, args![seats, event_id]).await?;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, Error> {
        let sql = "SELECT seats FROM holdings WHERE event_id = $1 AND customer = $2";
        let held = self
            .conn
            .fetch_optional(sql, args![event_id, customer], |r| r.int(0))
            .await?;
        Ok(held.unwrap_or(0))
    }

    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        _: u32,
        now: u32,
    ) -> Result<(), Error> {
        // Nothing changed what `held` read: SQLite's writer holds the file's write lock, and on
        // PostgreSQL booking and releasing lock the event's inventory row first.
        let sql = "INSERT INTO holdings (event_id, customer, seats) VALUES ($1, $2, $3)
                   ON CONFLICT (event_id, customer) DO UPDATE SET seats = excluded.seats";
        self.conn
            .execute(sql, args![event_id, customer, now])
            .await?;
        Ok(())
    }

    async fn insert_booking(&mut self, b: &Booking) -> Result<(), Error> {
        insert_booking(&mut self.conn, b).await
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, Error> {
        // Locks the event's inventory row before the booking's, the order in which booking and
        // cancelling an event take them: the other order could deadlock with an event
        // cancellation. A concurrent release of the booking waits on the event, then finds the
        // booking inactive.
        if self.conn.dialect() == Dialect::Postgres {
            let sql = "SELECT 1 FROM inventory i JOIN bookings b ON b.event_id = i.event_id
                       WHERE b.id = $1 FOR UPDATE OF i";
            self.conn.execute(sql, args![booking_id]).await?;
        }
        let before = booking(&mut self.conn, booking_id)
            .await?
            .filter(|b| b.status == BookingStatus::Active);
        if before.is_some() {
            let sql = "UPDATE bookings SET status = $1 WHERE id = $2";
            self.conn
                .execute(sql, args![status.as_str(), booking_id])
                .await?;
        }
        Ok(before)
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, Error> {
        booking(&mut self.conn, booking_id).await
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<BookingId>, Error> {
        let sql = "SELECT id FROM bookings WHERE event_id = $1 AND status = 'active' ORDER BY seq";
        self.conn
            .fetch(sql, args![event_id], |r| Ok(r.text(0)?.into()))
            .await
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, Error> {
        let sql = "SELECT EXISTS (SELECT 1 FROM inventory WHERE event_id = $1)
                       OR EXISTS (SELECT 1 FROM waiting_events WHERE event_id = $1)";
        let known = self.conn.fetch(sql, args![event_id], |r| r.bool(0)).await?;
        Ok(known == [true])
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, Error> {
        if self.conn.dialect() == Dialect::Postgres {
            // See the comment on PostgreSQL's locations table.
            let sql = "INSERT INTO locations (id) VALUES ($1) ON CONFLICT DO NOTHING";
            self.conn.execute(sql, args![location]).await?;
        }
        let sql = (self.conn.dialect()).locked("SELECT halls FROM locations WHERE id = $1");
        let json = self
            .conn
            .fetch_optional(&sql, args![location], |r| r.opt_text(0))
            .await?;
        Ok(json.flatten().map(|j| parse_halls(&j)).transpose()?)
    }

    async fn record_halls(&mut self, location: &str, halls: &[Hall]) -> Result<Vec<Hall>, Error> {
        // The first locationCreated's halls win; on PostgreSQL the row stays locked to the
        // commit.
        let sql = "INSERT INTO locations (id, halls) VALUES ($1, $2)
                   ON CONFLICT (id) DO UPDATE SET halls = COALESCE(locations.halls, excluded.halls)
                   RETURNING halls";
        let halls = halls_json(halls);
        let json = self
            .conn
            .fetch(sql, args![location, &halls], |r| r.text(0))
            .await?;
        let json = json.into_iter().next().unwrap_or_default();
        Ok(parse_halls(&json)?)
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), Error> {
        let sql =
            "INSERT INTO inventory (event_id, name, capacity, available, status, per_customer)
                   VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING";
        let status = sale_status(sale.cancelled);
        let args = args![
            sale.event_id,
            sale.name,
            sale.capacity,
            status,
            sale.seats_per_customer
        ];
        self.conn.execute(sql, args).await?;
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), Error> {
        let sql = "INSERT INTO waiting_events (event_id, location_id, event) VALUES ($1, $2, $3)
                   ON CONFLICT (event_id) DO NOTHING";
        let json = event_json(event);
        self.conn
            .execute(sql, args![&event.id, location, &json])
            .await?;
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, Error> {
        let sql = (self.conn.dialect()).locked(
            "SELECT event, cancelled FROM waiting_events WHERE location_id = $1 ORDER BY event_id",
        );
        let read = |r: &Row<'_>| Ok(waiting(&r.text(0)?, r.bool(1)?)?);
        self.conn.fetch(&sql, args![location], read).await
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), Error> {
        let sql = "DELETE FROM waiting_events WHERE event_id = $1";
        self.conn.execute(sql, args![event_id]).await?;
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, Error> {
        // Waiting first: on PostgreSQL a locationCreated that puts it on sale meanwhile holds its
        // row, and once it commits, stop_sale sees the event.
        let sql = "UPDATE waiting_events SET cancelled = TRUE WHERE event_id = $1";
        Ok(self.conn.execute(sql, args![event_id]).await? == 1)
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, Error> {
        // A booking committed before this update is seen by active_bookings after it, and none
        // can be taken after it.
        let sql = "UPDATE inventory SET status = 'cancelled' WHERE event_id = $1";
        Ok(self.conn.execute(sql, args![event_id]).await? == 1)
    }
}

async fn insert_booking(conn: &mut impl Conn, b: &Booking) -> Result<(), Error> {
    let sql = "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
               VALUES ($1, $2, $3, $4, $5, $6, $7)";
    let args = args![
        &b.id,
        &b.event_id,
        b.seats,
        b.date,
        b.status.as_str(),
        &b.user_id,
        &b.email
    ];
    conn.execute(sql, args).await?;
    Ok(())
}

/// Writes a state a replay rebuilt into an empty store (see `Restore`), with `outbox` and the
/// events owed as the events still to publish.
pub async fn restore<C: Conn>(
    unit: &mut SqlUnit<C>,
    rebuilt: &Rebuilt,
    outbox: Vec<Envelope>,
) -> Result<(), Error> {
    let conn = &mut unit.conn;
    let sql = "SELECT (SELECT COUNT(*) FROM inventory) + (SELECT COUNT(*) FROM bookings)
                    + (SELECT COUNT(*) FROM locations) + (SELECT COUNT(*) FROM waiting_events)";
    if conn.fetch(sql, &[], |r| r.i64(0)).await? != [0] {
        return Err(Error::Internal(
            "a replay writes into an empty bookings database only".into(),
        ));
    }
    for e in &rebuilt.inventory {
        let sql =
            "INSERT INTO inventory (event_id, name, capacity, available, status, per_customer)
                   VALUES ($1, $2, $3, $4, $5, $6)";
        let status = sale_status(e.cancelled);
        let args = args![
            &e.event_id,
            &e.name,
            e.capacity,
            e.available,
            status,
            e.per_customer
        ];
        conn.execute(sql, args).await?;
    }
    for (event_id, customer, seats) in &rebuilt.holdings {
        let sql = "INSERT INTO holdings (event_id, customer, seats) VALUES ($1, $2, $3)";
        conn.execute(sql, args![event_id, customer, *seats]).await?;
    }
    for location in &rebuilt.locations {
        let sql = "INSERT INTO locations (id, halls) VALUES ($1, $2)";
        let halls = halls_json(&location.halls);
        conn.execute(sql, args![&location.key, &halls]).await?;
    }
    for w in &rebuilt.waiting {
        let sql = "INSERT INTO waiting_events (event_id, location_id, event, cancelled)
                   VALUES ($1, $2, $3, $4)";
        let (key, json) = (location_key(&w.event.location_id), event_json(&w.event));
        conn.execute(sql, args![&w.event.id, &key, &json, w.cancelled])
            .await?;
    }
    for b in &rebuilt.bookings {
        let booking = Booking {
            id: b.id.clone(),
            event_id: b.event_id.clone(),
            event_name: String::new(),
            seats: b.seats,
            date: b.date,
            status: b.status,
            user_id: b.user_id.clone(),
            email: b.email.clone(),
        };
        insert_booking(conn, &booking).await?;
    }
    for id in &rebuilt.message_ids {
        conn.first_delivery(id).await?;
    }
    unit.caused = outbox;
    unit.caused
        .extend(rebuilt.owed.iter().map(|owed| Envelope::new(owed, None)));
    Ok(())
}
