use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use contracts::{Envelope, EventCreated, Hall};
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, PgConnection, Row};
use postgres::{Options, Pg, PgError, PgUnit, inbox, int, outbox};

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
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &str = "
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

const SELECT_BOOKINGS: &str = "SELECT b.id, b.event_id, i.name, b.seats, b.date, b.status,
        b.user_id, b.email
     FROM bookings b JOIN inventory i ON i.event_id = b.event_id";

/// The bookings service's tables in PostgreSQL, in the schema `bookings` unless told otherwise.
pub struct PgBookingStore {
    pg: Pg,
    /// Started on the first booking (see [`spawn_booking_queue`]).
    queue: OnceLock<mpsc::UnboundedSender<Queued>>,
}

impl PgBookingStore {
    /// Prepares the store without connecting; see [`Pg::connect_lazy`].
    pub fn connect(url: &str) -> Result<Self, PgError> {
        Self::connect_in(url, "bookings")
    }

    /// The same in another schema (`myevents replay` builds the new state beside the old).
    pub fn connect_in(url: &str, schema: &str) -> Result<Self, PgError> {
        let pg = Pg::connect_lazy(
            url,
            Options {
                schema: schema.into(),
                migrations: vec![SCHEMA, outbox::MIGRATION, inbox::MIGRATION],
                // A flash sale waits on one inventory row: more connections than this only
                // queue in the database instead of in the pool.
                max_connections: 16,
            },
        )?;
        Ok(Self {
            pg,
            queue: OnceLock::new(),
        })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.pg.migrate().await
    }
}

fn booking_row(row: &PgRow) -> Result<Booking, sqlx::Error> {
    Ok(Booking {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_name: row.try_get("name")?,
        seats: int(row, "seats")?,
        date: row.try_get("date")?,
        status: postgres::stored(row, "status", "booking status", BookingStatus::parse)?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
    })
}

async fn select_booking<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    id: &str,
) -> Result<Option<Booking>, PgError> {
    let row = postgres::query(format!("{SELECT_BOOKINGS} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(booking_row).transpose()?)
}

/// A transaction as the bookings rules see it; `state` holds the seats of each event a batch of
/// bookings has read (and locked) so far.
type Unit<'c> = PgUnit<'c, Stocks>;

/// Writes the seats a batch took back, one conditional update per event; the condition and the
/// table's CHECK would still refuse an oversell, failing the transaction.
async fn write_back(conn: &mut PgConnection, stocks: &Stocks) -> Result<(), PgError> {
    for (event_id, taken) in seats_taken(stocks) {
        let updated = sqlx::query(
            "UPDATE inventory SET available = available - $1
             WHERE event_id = $2 AND status = 'active' AND available >= $1",
        )
        .bind(i64::from(taken))
        .bind(event_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(PgError::Internal(format!(
                "the seats of event {event_id} changed under a booking transaction"
            )));
        }
    }
    Ok(())
}

impl UnitOfWork for Unit<'_> {
    async fn claim_key(
        &mut self,
        idem: &Idempotency,
        date: i64,
    ) -> Result<Option<Earlier>, PgError> {
        // Claimed first: a concurrent request with the same key waits here until this
        // transaction ends, then finds the answer instead of booking a second time.
        let claimed = sqlx::query(
            "INSERT INTO idempotency (key, fingerprint, answer, created_at) VALUES ($1, $2, '', $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&idem.key)
        .bind(&idem.fingerprint)
        .bind(date)
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(None);
        }
        let earlier = sqlx::query("SELECT fingerprint, answer FROM idempotency WHERE key = $1")
            .bind(&idem.key)
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(Some(Earlier {
            fingerprint: earlier.try_get("fingerprint")?,
            answer: earlier.try_get("answer")?,
        }))
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        _: i64,
        answer: Option<&str>,
    ) -> Result<(), PgError> {
        match answer {
            Some(answer) => sqlx::query("UPDATE idempotency SET answer = $2 WHERE key = $1")
                .bind(&idem.key)
                .bind(answer),
            None => sqlx::query("DELETE FROM idempotency WHERE key = $1").bind(&idem.key),
        }
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, PgError> {
        if let Some(known) = self.state.get(event_id) {
            return Ok(known.clone());
        }
        // Locked to the commit: concurrent transactions of the event wait here, so nothing
        // changes the seats between this read and the write back.
        let row = sqlx::query(
            "SELECT name, available, status, per_customer FROM inventory WHERE event_id = $1 FOR UPDATE",
        )
        .bind(event_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        let stock = match row {
            None => None,
            Some(row) => {
                let status = postgres::stored(&row, "status", "sale status", SaleStatus::parse)?;
                let per_customer: Option<i64> = row.try_get("per_customer")?;
                let stock = Stock::new(
                    row.try_get("name")?,
                    int(&row, "available")?,
                    status == SaleStatus::Active,
                );
                Some(stock.per_customer(per_customer.and_then(|n| u32::try_from(n).ok())))
            }
        };
        self.state.insert(event_id.to_owned(), stock.clone());
        Ok(stock)
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), PgError> {
        // Written back once for the transaction, by write_back.
        take_in_batch(&mut self.state, event_id, seats).map_err(PgError::Internal)
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), PgError> {
        sqlx::query("UPDATE inventory SET available = available + $1 WHERE event_id = $2")
            .bind(i64::from(seats))
            .bind(event_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, PgError> {
        let seats: Option<i64> =
            sqlx::query_scalar("SELECT seats FROM holdings WHERE event_id = $1 AND customer = $2")
                .bind(event_id)
                .bind(customer)
                .fetch_optional(&mut *self.conn)
                .await?;
        Ok(seats.and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
    }

    async fn hold(
        &mut self,
        event_id: &str,
        customer: &str,
        _: u32,
        now: u32,
    ) -> Result<(), PgError> {
        // The event's inventory row is locked (booking and releasing lock it first), so nothing
        // changed what `held` read.
        sqlx::query(
            "INSERT INTO holdings (event_id, customer, seats) VALUES ($1, $2, $3)
             ON CONFLICT (event_id, customer) DO UPDATE SET seats = EXCLUDED.seats",
        )
        .bind(event_id)
        .bind(customer)
        .bind(i64::from(now))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&booking.id)
        .bind(&booking.event_id)
        .bind(i64::from(booking.seats))
        .bind(booking.date)
        .bind(booking.status.as_str())
        .bind(&booking.user_id)
        .bind(&booking.email)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, PgError> {
        // Locks the event's inventory row before the booking's, the order in which booking and
        // cancelling an event take them: the other order could deadlock with an event
        // cancellation. A concurrent release of the booking waits on its row, then finds it
        // inactive.
        sqlx::query(
            "SELECT 1 FROM inventory i JOIN bookings b ON b.event_id = i.event_id
             WHERE b.id = $1 FOR UPDATE OF i",
        )
        .bind(booking_id)
        .execute(&mut *self.conn)
        .await?;
        let row = sqlx::query(
            "WITH b AS (
                UPDATE bookings SET status = $1 WHERE id = $2 AND status = 'active' RETURNING *
             )
             SELECT b.id, b.event_id, i.name, b.seats, b.date, 'active' AS status,
                 b.user_id, b.email
             FROM b JOIN inventory i ON i.event_id = b.event_id",
        )
        .bind(status.as_str())
        .bind(booking_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(row.as_ref().map(booking_row).transpose()?)
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, PgError> {
        select_booking(&mut *self.conn, booking_id).await
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<String>, PgError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM bookings WHERE event_id = $1 AND status = 'active' ORDER BY seq",
        )
        .bind(event_id)
        .fetch_all(&mut *self.conn)
        .await?)
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, PgError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inventory WHERE event_id = $1)
                 OR EXISTS (SELECT 1 FROM waiting_events WHERE event_id = $1)",
        )
        .bind(event_id)
        .fetch_one(&mut *self.conn)
        .await?)
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, PgError> {
        // See the comment on the locations table.
        sqlx::query("INSERT INTO locations (id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(location)
            .execute(&mut *self.conn)
            .await?;
        let json: Option<String> =
            sqlx::query_scalar("SELECT halls FROM locations WHERE id = $1 FOR UPDATE")
                .bind(location)
                .fetch_one(&mut *self.conn)
                .await?;
        Ok(json.map(|j| parse_halls(&j)).transpose()?)
    }

    async fn record_halls(&mut self, location: &str, halls: &[Hall]) -> Result<Vec<Hall>, PgError> {
        // The first locationCreated's halls win; the row stays locked to the commit.
        let json: String = sqlx::query_scalar(
            "INSERT INTO locations (id, halls) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET halls = COALESCE(locations.halls, EXCLUDED.halls)
             RETURNING halls",
        )
        .bind(location)
        .bind(halls_json(halls))
        .fetch_one(&mut *self.conn)
        .await?;
        Ok(parse_halls(&json)?)
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO inventory (event_id, name, capacity, available, status, per_customer)
             VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(sale.event_id)
        .bind(sale.name)
        .bind(i64::from(sale.capacity))
        .bind(sale_status(sale.cancelled))
        .bind(sale.seats_per_customer.map(i64::from))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO waiting_events (event_id, location_id, event) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(location)
        .bind(event_json(event))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, PgError> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT event, cancelled FROM waiting_events WHERE location_id = $1
             ORDER BY event_id FOR UPDATE",
        )
        .bind(location)
        .fetch_all(&mut *self.conn)
        .await?;
        Ok(rows
            .iter()
            .map(|(json, cancelled)| waiting(json, *cancelled))
            .collect::<Result<_, _>>()?)
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), PgError> {
        sqlx::query("DELETE FROM waiting_events WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, PgError> {
        // Waiting first: a locationCreated that puts it on sale meanwhile holds its row, and
        // once it commits, stop_sale sees the event.
        let waiting = sqlx::query("UPDATE waiting_events SET cancelled = TRUE WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(waiting.rows_affected() == 1)
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, PgError> {
        // A booking committed before this update is seen by active_bookings after it, and none
        // can be taken after it.
        let known = sqlx::query("UPDATE inventory SET status = 'cancelled' WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.conn)
            .await?;
        Ok(known.rows_affected() == 1)
    }
}

/// See [`BookingStore::restore`]; returns the events to commit into the outbox.
async fn restore(
    conn: &mut PgConnection,
    rebuilt: &Rebuilt,
    outbox: Vec<Envelope>,
) -> Result<Vec<Envelope>, PgError> {
    let holds: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM inventory) + (SELECT COUNT(*) FROM bookings)
              + (SELECT COUNT(*) FROM locations) + (SELECT COUNT(*) FROM waiting_events)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if holds > 0 {
        return Err(PgError::Internal(
            "a replay writes into an empty bookings database only".into(),
        ));
    }
    for event in &rebuilt.inventory {
        sqlx::query(
            "INSERT INTO inventory (event_id, name, capacity, available, status, per_customer)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.event_id)
        .bind(&event.name)
        .bind(i64::from(event.capacity))
        .bind(i64::from(event.available))
        .bind(sale_status(event.cancelled))
        .bind(event.per_customer.map(i64::from))
        .execute(&mut *conn)
        .await?;
    }
    for (event_id, customer, seats) in &rebuilt.holdings {
        sqlx::query("INSERT INTO holdings (event_id, customer, seats) VALUES ($1, $2, $3)")
            .bind(event_id)
            .bind(customer)
            .bind(i64::from(*seats))
            .execute(&mut *conn)
            .await?;
    }
    for location in &rebuilt.locations {
        sqlx::query("INSERT INTO locations (id, halls) VALUES ($1, $2)")
            .bind(&location.key)
            .bind(halls_json(&location.halls))
            .execute(&mut *conn)
            .await?;
    }
    for w in &rebuilt.waiting {
        sqlx::query(
            "INSERT INTO waiting_events (event_id, location_id, event, cancelled) VALUES ($1, $2, $3, $4)",
        )
        .bind(&w.event.id)
        .bind(location_key(&w.event.location_id))
        .bind(event_json(&w.event))
        .bind(w.cancelled)
        .execute(&mut *conn)
        .await?;
    }
    for b in &rebuilt.bookings {
        sqlx::query(
            "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&b.id)
        .bind(&b.event_id)
        .bind(i64::from(b.seats))
        .bind(b.date)
        .bind(b.status.as_str())
        .bind(&b.user_id)
        .bind(&b.email)
        .execute(&mut *conn)
        .await?;
    }
    for id in &rebuilt.message_ids {
        inbox::first_delivery(conn, id).await?;
    }
    let mut caused = outbox;
    caused.extend(rebuilt.owed.iter().map(|owed| Envelope::new(owed, None)));
    Ok(caused)
}

/// A request to book and the `eventBooked` it emits if it is taken.
type BookingRequest = (NewBooking, Envelope);

/// A booking waiting in the queue, and where its answer goes.
type Queued = (
    BookingRequest,
    oneshot::Sender<Result<BookResult, StoreError>>,
);

/// Bookings wait for a single task, which books everything queued meanwhile in one transaction
/// (an event's row is locked once, its seats taken in memory, one update per event): without
/// it, a flash sale ran one transaction at a time on the event's row, each waiting for the
/// previous one's commit to be flushed. If the shared transaction fails, each of its requests is
/// booked again in a transaction of its own, so one bad request fails alone.
fn spawn_booking_queue(pg: Pg) -> mpsc::UnboundedSender<Queued> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut queued = vec![first];
            while queued.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => queued.push(more),
                    Err(_) => break,
                }
            }
            let (requests, replies): (Vec<BookingRequest>, Vec<_>) = queued.into_iter().unzip();
            let results = match book_together(&pg, &requests).await {
                Ok(results) => results.into_iter().map(Ok).collect(),
                Err(error) if requests.len() == 1 => vec![Err(error.into())],
                Err(_) => {
                    let mut alone = Vec::with_capacity(requests.len());
                    for request in &requests {
                        let result = book_together(&pg, std::slice::from_ref(request)).await;
                        alone.push(result.map(|mut r| r.remove(0)).map_err(StoreError::from));
                    }
                    alone
                }
            };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
    });
    tx
}

/// Bookings taken together in a queue's transaction.
const MAX_BATCH: usize = 256;

/// Books `requests` in one transaction, in order ([`rules::book`]); one answer each.
async fn book_together(pg: &Pg, requests: &[BookingRequest]) -> Result<Vec<BookResult>, PgError> {
    let mut tx = pg.begin().await?;
    let mut unit = PgUnit::new(&mut tx, Stocks::new());
    let mut results = Vec::with_capacity(requests.len());
    for (request, booked) in requests {
        results.push(rules::book(&mut unit, request, booked).await?);
    }
    write_back(unit.conn, &unit.state).await?;
    let caused = unit.caused;
    pg.commit(tx, &caused).await?;
    Ok(results)
}

#[async_trait]
impl BookingStore for PgBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let stopped = || StoreError::Unavailable("the booking queue has stopped".into());
        let queue = self
            .queue
            .get_or_init(|| spawn_booking_queue(self.pg.clone()));
        let booked = rules::booked_event(&booking, platform::telemetry::traceparent());
        let (reply, answer) = oneshot::channel();
        queue
            .send(((booking, booked), reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let trace = platform::telemetry::traceparent();
        let mut unit = PgUnit::new(&mut tx, Stocks::new());
        let booking = rules::cancel(&mut unit, booking_id, trace).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(booking)
    }

    async fn booking(&self, id: &str) -> Result<Option<Booking>, StoreError> {
        Ok(select_booking(self.pg.pool().await?, id).await?)
    }

    async fn bookings(&self, filter: BookingFilter) -> Result<Vec<Booking>, StoreError> {
        // One statement per filter shape, so each can use its index.
        let condition = match (&filter.user_id, &filter.event_id) {
            (Some(_), Some(_)) => "b.user_id = $1 AND b.event_id = $2",
            (Some(_), None) => "b.user_id = $1 AND $2::text IS NULL",
            (None, Some(_)) => "$1::text IS NULL AND b.event_id = $2",
            (None, None) => "$1::text IS NULL AND $2::text IS NULL",
        };
        let query = format!("{SELECT_BOOKINGS} WHERE {condition} ORDER BY b.seq");
        let query = postgres::query(query)
            .bind(filter.user_id)
            .bind(filter.event_id);
        Ok(self.pg.fetch_all(query, booking_row).await?)
    }

    async fn availability(&self, event_id: &str) -> Result<Option<Availability>, StoreError> {
        let query =
            sqlx::query("SELECT capacity, available, status FROM inventory WHERE event_id = $1")
                .bind(event_id);
        Ok(self
            .pg
            .fetch_optional(query, |r| {
                Ok(availability(
                    event_id.to_owned(),
                    int(r, "capacity")?,
                    int(r, "available")?,
                    postgres::stored(r, "status", "sale status", SaleStatus::parse)?,
                ))
            })
            .await?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, Delivered)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, Stocks::new());
        let outcomes = bus::apply_once(&mut unit, &batch, &mut rules::Inventory).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(outcomes)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(postgres::PgOutbox::new(self.pg.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}

#[async_trait]
impl Restore for PgBookingStore {
    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        let mut tx = self.pg.begin().await?;
        let caused = restore(&mut tx, &rebuilt, outbox).await?;
        Ok(self.pg.commit(tx, &caused).await?)
    }
}
