use std::collections::hash_map::Entry;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use contracts::{CancelReason, DomainEvent, Envelope};
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, PgConnection, Row};
use postgres::{Options, Pg, PgError, inbox, int, outbox};

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
CREATE INDEX IF NOT EXISTS waiting_by_location ON waiting_events (location_id);";

const SELECT_BOOKINGS: &str = "SELECT b.id, b.event_id, i.name, b.seats, b.date, b.status,
        COALESCE(b.user_id, '') AS user_id, b.email
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

fn json_failure(e: serde_json::Error) -> PgError {
    PgError::Internal(format!("cannot encode an idempotent answer: {e}"))
}

/// An event's seats, read and locked (`FOR UPDATE`) the first time a booking transaction
/// touches the event; taken in memory and written back once by [`write_back`] before the commit.
/// Concurrent transactions of the event wait on the lock, so nothing changes the seats in
/// between. `None` for an event this service does not know.
async fn lock_stock(conn: &mut PgConnection, event_id: &str) -> Result<Option<Stock>, PgError> {
    let row =
        sqlx::query("SELECT name, available, status FROM inventory WHERE event_id = $1 FOR UPDATE")
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status = postgres::stored(&row, "status", "sale status", SaleStatus::parse)?;
    Ok(Some(Stock::new(
        row.try_get("name")?,
        int(&row, "available")?,
        status == SaleStatus::Active,
    )))
}

/// Writes the seats taken back, one conditional update per event; the condition and the
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

/// One request of a booking transaction, in arrival order; see [`BookingStore::book`]. Returns
/// the answer and, if seats were taken, the `eventBooked` to commit with it.
async fn book(
    conn: &mut PgConnection,
    request: &NewBooking,
    stocks: &mut Stocks,
) -> Result<(BookResult, Option<Envelope>), PgError> {
    if let Some(idem) = &request.idempotency {
        // Claim the key first: a concurrent request with the same key waits here until this
        // transaction ends, then finds the answer instead of booking a second time.
        let claimed = sqlx::query(
            "INSERT INTO idempotency (key, fingerprint, answer, created_at) VALUES ($1, $2, '', $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&idem.key)
        .bind(&idem.fingerprint)
        .bind(request.date)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if claimed == 0 {
            let earlier = sqlx::query("SELECT fingerprint, answer FROM idempotency WHERE key = $1")
                .bind(&idem.key)
                .fetch_one(&mut *conn)
                .await?;
            let fingerprint: String = earlier.try_get("fingerprint")?;
            let answer: String = earlier.try_get("answer")?;
            return Ok((
                replay(idem, &fingerprint, &answer).map_err(json_failure)?,
                None,
            ));
        }
    }

    let stock = match stocks.entry(request.event_id.clone()) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(first) => first.insert(lock_stock(&mut *conn, &request.event_id).await?),
    };
    let (outcome, booked) = match take_seats(stock.as_mut(), request.seats) {
        Err(refused) => (refused.into(), None),
        Ok(event_name) => {
            let customer = &request.customer;
            sqlx::query(
                "INSERT INTO bookings (id, event_id, seats, date, status, user_id, email)
                 VALUES ($1, $2, $3, $4, 'active', $5, $6)",
            )
            .bind(&request.id)
            .bind(&request.event_id)
            .bind(i64::from(request.seats))
            .bind(request.date)
            .bind(&customer.user_id)
            .bind(&customer.email)
            .execute(&mut *conn)
            .await?;
            let booking = request.booked(event_name.to_owned());
            (BookOutcome::Booked { booking }, Some(booked_event(request)))
        }
    };

    if let Some(idem) = &request.idempotency {
        if outcome.is_final() {
            let answer = serde_json::to_string(&outcome).map_err(json_failure)?;
            sqlx::query("UPDATE idempotency SET answer = $2 WHERE key = $1")
                .bind(&idem.key)
                .bind(answer)
                .execute(&mut *conn)
                .await?;
        } else {
            sqlx::query("DELETE FROM idempotency WHERE key = $1")
                .bind(&idem.key)
                .execute(&mut *conn)
                .await?;
        }
    }
    let result = BookResult {
        outcome,
        replayed: false,
    };
    Ok((result, booked))
}

/// Marks one active booking as cancelled for `reason` and gives its seats back; its
/// `bookingCancelled` (in the trace `trace` names), or `None` when it was not active (nothing
/// changes: seats return exactly once, since a concurrent release waits on the booking's row
/// and then finds it inactive).
async fn release(
    conn: &mut PgConnection,
    booking_id: &str,
    reason: CancelReason,
    trace: Option<String>,
) -> Result<Option<Envelope>, sqlx::Error> {
    // Locks the event's inventory row before the booking's, the order in which booking and
    // cancelling an event take them: the other order could deadlock with an event cancellation.
    sqlx::query(
        "SELECT 1 FROM inventory i JOIN bookings b ON b.event_id = i.event_id
         WHERE b.id = $1 FOR UPDATE OF i",
    )
    .bind(booking_id)
    .execute(&mut *conn)
    .await?;
    let released = sqlx::query(
        "UPDATE bookings SET status = $1 WHERE id = $2 AND status = 'active' RETURNING event_id, seats",
    )
    .bind(cancelled_status(reason).as_str())
    .bind(booking_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = released else {
        return Ok(None);
    };
    let event_id: String = row.try_get("event_id")?;
    let seats: u32 = int(&row, "seats")?;
    sqlx::query("UPDATE inventory SET available = available + $1 WHERE event_id = $2")
        .bind(i64::from(seats))
        .bind(&event_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(booking_cancelled(
        booking_id, event_id, seats, reason, trace,
    )))
}

/// Puts an event on sale with `capacity` seats (cancelled already if its `eventCancelled`
/// came while it waited for its location). An event is created once: if it is on sale
/// already, nothing changes.
async fn put_on_sale(
    conn: &mut PgConnection,
    event_id: &str,
    name: &str,
    capacity: u32,
    cancelled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO inventory (event_id, name, capacity, available, status)
         VALUES ($1, $2, $3, $3, $4) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(name)
    .bind(i64::from(capacity))
    .bind(if cancelled { "cancelled" } else { "active" })
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn data(error: String) -> sqlx::Error {
    sqlx::Error::Decode(error.into())
}

/// Applies one event to the inventory (see [`BookingStore::apply`]); the inbox is
/// `postgres::inbox::apply_once`'s business.
async fn apply_one(
    conn: &mut PgConnection,
    delivered: &Delivered,
) -> Result<inbox::Applied, sqlx::Error> {
    match &delivered.event {
        DomainEvent::EventCreated(created) => {
            // An event is created once; another eventCreated for it (a new message id) changes
            // nothing.
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM inventory WHERE event_id = $1)
                     OR EXISTS (SELECT 1 FROM waiting_events WHERE event_id = $1)",
            )
            .bind(&created.id)
            .fetch_one(&mut *conn)
            .await?;
            if known {
                return Ok((bus::Outcome::Applied, Vec::new()));
            }
            let key = location_key(&created.location_id);
            let halls = match created.capacity {
                Some(_) => None,
                None => {
                    // See the comment on the locations table.
                    sqlx::query("INSERT INTO locations (id) VALUES ($1) ON CONFLICT DO NOTHING")
                        .bind(&key)
                        .execute(&mut *conn)
                        .await?;
                    let json: Option<String> =
                        sqlx::query_scalar("SELECT halls FROM locations WHERE id = $1 FOR UPDATE")
                            .bind(&key)
                            .fetch_one(&mut *conn)
                            .await?;
                    json.map(|j| parse_halls(&j).map_err(data)).transpose()?
                }
            };
            match placement(created, halls.as_deref()) {
                Placement::OnSale(capacity) => {
                    put_on_sale(conn, &created.id, &created.name, capacity, false).await?
                }
                Placement::AwaitsLocation => {
                    sqlx::query(
                        "INSERT INTO waiting_events (event_id, location_id, event) VALUES ($1, $2, $3)
                         ON CONFLICT (event_id) DO NOTHING",
                    )
                    .bind(&created.id)
                    .bind(&key)
                    .bind(event_json(created))
                    .execute(&mut *conn)
                    .await?;
                }
                Placement::Unsellable(why) => return Ok((bus::Outcome::Poison(why), Vec::new())),
            }
            Ok((bus::Outcome::Applied, Vec::new()))
        }
        DomainEvent::LocationCreated(location) => {
            let key = location_key(&location.id);
            // The first locationCreated's halls win; the row stays locked to the commit.
            let json: String = sqlx::query_scalar(
                "INSERT INTO locations (id, halls) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET halls = COALESCE(locations.halls, EXCLUDED.halls)
                 RETURNING halls",
            )
            .bind(&key)
            .bind(halls_json(&location.halls))
            .fetch_one(&mut *conn)
            .await?;
            let halls = parse_halls(&json).map_err(data)?;
            let waiting: Vec<(String, bool)> = sqlx::query_as(
                "SELECT event, cancelled FROM waiting_events WHERE location_id = $1
                 ORDER BY event_id FOR UPDATE",
            )
            .bind(&key)
            .fetch_all(&mut *conn)
            .await?;
            for (json, cancelled) in waiting {
                let event = parse_event(&json).map_err(data)?;
                if let Some(capacity) = seats_at(&event, &halls) {
                    put_on_sale(conn, &event.id, &event.name, capacity, cancelled).await?;
                    sqlx::query("DELETE FROM waiting_events WHERE event_id = $1")
                        .bind(&event.id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Ok((bus::Outcome::Applied, Vec::new()))
        }
        DomainEvent::EventCancelled(cancelled) => {
            // Waiting first: a locationCreated that puts it on sale meanwhile holds its row,
            // and once it commits the inventory update below sees the event.
            let waiting =
                sqlx::query("UPDATE waiting_events SET cancelled = TRUE WHERE event_id = $1")
                    .bind(&cancelled.id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            if waiting == 1 {
                // It goes on sale cancelled when its location comes; it has no bookings.
                return Ok((bus::Outcome::Applied, Vec::new()));
            }
            let known =
                sqlx::query("UPDATE inventory SET status = 'cancelled' WHERE event_id = $1")
                    .bind(&cancelled.id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            if known == 0 {
                // Its eventCreated may still be on the way (a broker without global order).
                let why = format!("event {} is not known yet", cancelled.id);
                return Ok((bus::Outcome::Retry(why), Vec::new()));
            }
            // After the update above: a booking committed before it is seen here, and none can
            // be taken after it.
            let active: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM bookings WHERE event_id = $1 AND status = 'active' ORDER BY seq",
            )
            .bind(&cancelled.id)
            .fetch_all(&mut *conn)
            .await?;
            let mut caused = Vec::with_capacity(active.len());
            for booking_id in active {
                let trace = delivered.trace.clone();
                let reason = CancelReason::EventCancelled;
                caused.extend(release(conn, &booking_id, reason, trace).await?);
            }
            Ok((bus::Outcome::Applied, caused))
        }
        _ => Ok((bus::Outcome::Applied, Vec::new())),
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
            "INSERT INTO inventory (event_id, name, capacity, available, status) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event.event_id)
        .bind(&event.name)
        .bind(i64::from(event.capacity))
        .bind(i64::from(event.available))
        .bind(if event.cancelled { "cancelled" } else { "active" })
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

/// A booking waiting in the queue, and where its answer goes.
type Queued = (NewBooking, oneshot::Sender<Result<BookResult, StoreError>>);

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
            let (requests, replies): (Vec<NewBooking>, Vec<_>) = queued.into_iter().unzip();
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

/// Books `requests` in one transaction, in order; one answer each.
async fn book_together(pg: &Pg, requests: &[NewBooking]) -> Result<Vec<BookResult>, PgError> {
    let mut tx = pg.begin().await?;
    let mut stocks = Stocks::new();
    let mut results = Vec::with_capacity(requests.len());
    let mut events = Vec::new();
    for request in requests {
        let (result, booked) = book(&mut tx, request, &mut stocks).await?;
        results.push(result);
        events.extend(booked);
    }
    write_back(&mut tx, &stocks).await?;
    pg.commit(tx, &events).await?;
    Ok(results)
}

#[async_trait]
impl BookingStore for PgBookingStore {
    async fn book(&self, booking: NewBooking) -> Result<BookResult, StoreError> {
        let stopped = || StoreError::Unavailable("the booking queue has stopped".into());
        let queue = self
            .queue
            .get_or_init(|| spawn_booking_queue(self.pg.clone()));
        let (reply, answer) = oneshot::channel();
        queue.send((booking, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn cancel(&self, booking_id: &str) -> Result<Option<Booking>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let trace = platform::telemetry::traceparent();
        let cancelled = release(&mut tx, booking_id, CancelReason::Customer, trace)
            .await
            .map_err(PgError::from)?;
        let booking = select_booking(&mut *tx, booking_id).await?;
        self.pg.commit(tx, cancelled.as_slice()).await?;
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
        let (outcomes, caused) =
            inbox::apply_once(&mut tx, &batch, |c, e| Box::pin(apply_one(c, e)))
                .await
                .map_err(PgError::from)?;
        self.pg.commit(tx, &caused).await?;
        Ok(outcomes)
    }

    async fn restore(&self, rebuilt: Rebuilt, outbox: Vec<Envelope>) -> Result<(), StoreError> {
        let mut tx = self.pg.begin().await?;
        let caused = restore(&mut tx, &rebuilt, outbox).await?;
        Ok(self.pg.commit(tx, &caused).await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(postgres::PgOutbox::new(self.pg.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}
