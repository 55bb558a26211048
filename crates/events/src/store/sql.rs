//! The events service on SQLite and PostgreSQL: one store, its statements written once (see the
//! `sql` crate). The schemas differ in column types only.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bus::unit::Corrupt;
use contracts::DomainEvent;
use sql::{Conn, Db, Error, Row, SqlUnit, args};
use sqlite::{DbError, Options, inbox, outbox};

use super::{EventStore, Page, StoreError};
use crate::domain::unit::UnitOfWork;
use crate::domain::{Event, EventStatus, Location, Sales, rules};

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS locations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    country    TEXT NOT NULL,
    open_time  INTEGER NOT NULL,
    close_time INTEGER NOT NULL,
    halls      TEXT NOT NULL -- JSON array of halls
);
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    duration    INTEGER NOT NULL,
    start_date  INTEGER NOT NULL,
    end_date    INTEGER NOT NULL,
    location_id TEXT NOT NULL REFERENCES locations (id),
    hall        TEXT NOT NULL,
    capacity    INTEGER NOT NULL,
    status      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, seq);
CREATE TABLE IF NOT EXISTS sales (
    event_id      TEXT PRIMARY KEY,
    seats_sold    INTEGER NOT NULL DEFAULT 0,
    bookings      INTEGER NOT NULL DEFAULT 0,
    cancellations INTEGER NOT NULL DEFAULT 0
);";

/// An event's limit of seats per customer; NULL for none (added after the first release).
const SQLITE_SEATS_PER_CUSTOMER: &str = "ALTER TABLE events ADD COLUMN seats_per_customer INTEGER";

#[cfg(feature = "postgres")]
const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS locations (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    country    TEXT NOT NULL,
    open_time  BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    halls      TEXT NOT NULL -- JSON array of halls
);
CREATE TABLE IF NOT EXISTS events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    duration    BIGINT NOT NULL,
    start_date  BIGINT NOT NULL,
    end_date    BIGINT NOT NULL,
    location_id TEXT NOT NULL REFERENCES locations (id),
    hall        TEXT NOT NULL,
    capacity    BIGINT NOT NULL,
    status      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, seq);
CREATE TABLE IF NOT EXISTS sales (
    event_id      TEXT PRIMARY KEY,
    seats_sold    BIGINT NOT NULL DEFAULT 0,
    bookings      BIGINT NOT NULL DEFAULT 0,
    cancellations BIGINT NOT NULL DEFAULT 0
);
-- An event's limit of seats per customer; NULL for none (added after the first release).
ALTER TABLE events ADD COLUMN IF NOT EXISTS seats_per_customer BIGINT;";

const LOCATION_COLUMNS: &str =
    "l.id, l.name, l.address, l.country, l.open_time, l.close_time, l.halls";

const SELECT_EVENTS: &str = "SELECT e.id, e.name, e.duration, e.start_date, e.end_date, e.hall,
        e.capacity, e.status, e.seats_per_customer,
        l.id, l.name, l.address, l.country, l.open_time, l.close_time, l.halls
     FROM events e JOIN locations l ON l.id = e.location_id";

const SELECT_SALES: &str =
    "SELECT s.event_id, s.seats_sold, s.bookings, s.cancellations FROM sales s";

/// The events service's tables in a SQLite file, or in PostgreSQL (in the schema `events`).
pub struct SqlEventStore {
    db: Db,
}

impl SqlEventStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let migrations = vec![
            SQLITE_SCHEMA,
            SQLITE_SEATS_PER_CUSTOMER,
            outbox::MIGRATION,
            inbox::MIGRATION,
        ];
        let options = Options {
            migrations,
            ..Options::default()
        };
        Ok(Self {
            db: Db::sqlite(path, options)?,
        })
    }

    /// Prepares the store without connecting; see [`postgres::Pg::connect_lazy`].
    #[cfg(feature = "postgres")]
    pub fn connect(url: &str) -> Result<Self, postgres::PgError> {
        let options = postgres::Options {
            schema: "events".into(),
            migrations: vec![
                PG_SCHEMA,
                postgres::outbox::MIGRATION,
                postgres::inbox::MIGRATION,
            ],
            max_connections: 8,
        };
        Ok(Self {
            db: Db::postgres(url, options)?,
        })
    }

    /// Creates PostgreSQL's tables now rather than on first use.
    #[cfg(feature = "postgres")]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(self.db.migrate().await?)
    }
}

/// A location read from `first` on: id, name, address, country, opening hours, halls (JSON).
fn location_at(row: &Row<'_>, first: usize) -> Result<Location, Error> {
    let halls = row.text(first + 6)?;
    Ok(Location {
        id: row.text(first)?.into(),
        name: row.text(first + 1)?,
        address: row.text(first + 2)?,
        country: row.text(first + 3)?,
        open_time: row.int(first + 4)?,
        close_time: row.int(first + 5)?,
        halls: serde_json::from_str(&halls).map_err(|e| Corrupt(format!("stored halls: {e}")))?,
    })
}

fn event_row(row: &Row<'_>) -> Result<Event, Error> {
    Ok(Event {
        id: row.text(0)?.into(),
        name: row.text(1)?,
        duration: row.int(2)?,
        start_date: row.i64(3)?,
        end_date: row.i64(4)?,
        hall: row.text(5)?,
        capacity: row.int(6)?,
        status: row.stored(7, "event status", EventStatus::parse)?,
        seats_per_customer: row.opt_int(8)?,
        location: location_at(row, 9)?,
    })
}

fn sales_row(r: &Row<'_>) -> Result<Sales, Error> {
    Ok(Sales {
        event_id: r.text(0)?.into(),
        seats_sold: r.i64(1)?,
        bookings: r.i64(2)?,
        cancellations: r.i64(3)?,
    })
}

/// The first event (in creation order) whose `column` is `value`.
async fn event_where(
    conn: &mut impl Conn,
    column: &str,
    value: &str,
) -> Result<Option<Event>, Error> {
    let sql = format!("{SELECT_EVENTS} WHERE e.{column} = $1 ORDER BY e.seq LIMIT 1");
    conn.fetch_optional(&sql, args![value], event_row).await
}

async fn location(conn: &mut impl Conn, id: &str) -> Result<Option<Location>, Error> {
    let sql = format!("SELECT {LOCATION_COLUMNS} FROM locations l WHERE l.id = $1");
    conn.fetch_optional(&sql, args![id], |r| location_at(r, 0))
        .await
}

async fn locations(conn: &mut impl Conn) -> Result<Vec<Location>, Error> {
    let sql = format!("SELECT {LOCATION_COLUMNS} FROM locations l ORDER BY l.seq");
    conn.fetch(&sql, &[], |r| location_at(r, 0)).await
}

async fn events(conn: &mut impl Conn, page: &Page) -> Result<Vec<Event>, Error> {
    // After an unknown id comes nothing.
    let after = match &page.after {
        Some(id) => {
            let sql = "SELECT seq FROM events WHERE id = $1";
            let seq = conn.fetch_optional(sql, args![id], |r| r.i64(0)).await?;
            seq.unwrap_or(i64::MAX)
        }
        None => 0,
    };
    let limit = page
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let sql = format!("{SELECT_EVENTS} WHERE e.seq > $1 ORDER BY e.seq LIMIT $2");
    conn.fetch(&sql, args![after, limit], event_row).await
}

async fn sales(conn: &mut impl Conn, event_id: &str) -> Result<Option<Sales>, Error> {
    let sql = format!("{SELECT_SALES} WHERE s.event_id = $1");
    conn.fetch_optional(&sql, args![event_id], sales_row).await
}

async fn all_sales(conn: &mut impl Conn) -> Result<Vec<Sales>, Error> {
    // Figures of an event this service does not know come first.
    let sql = format!(
        "{SELECT_SALES} LEFT JOIN events e ON e.id = s.event_id
         ORDER BY e.seq NULLS FIRST, s.event_id"
    );
    conn.fetch(&sql, &[], sales_row).await
}

impl<C: Conn> UnitOfWork for SqlUnit<C> {
    async fn insert_location(&mut self, l: &Location) -> Result<(), Error> {
        let halls = serde_json::to_string(&l.halls).map_err(|e| Corrupt(e.to_string()))?;
        let sql = "INSERT INTO locations (id, name, address, country, open_time, close_time, halls)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let args = args![
            &l.id,
            &l.name,
            &l.address,
            &l.country,
            l.open_time,
            l.close_time,
            &halls
        ];
        self.conn.execute(sql, args).await?;
        Ok(())
    }

    async fn insert_event(&mut self, e: &Event) -> Result<(), Error> {
        let sql = "INSERT INTO events (id, name, duration, start_date, end_date, location_id,
                       hall, capacity, status, seats_per_customer)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let (status, location) = (e.status.as_str(), &e.location.id);
        let args = args![
            &e.id,
            &e.name,
            e.duration,
            e.start_date,
            e.end_date,
            location,
            &e.hall,
            e.capacity,
            status,
            e.seats_per_customer
        ];
        self.conn.execute(sql, args).await?;
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, Error> {
        event_where(&mut self.conn, "id", id).await
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, Error> {
        let sql = "UPDATE events SET status = 'cancelled' WHERE id = $1 AND status = 'active'";
        Ok(self.conn.execute(sql, args![id]).await? == 1)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), Error> {
        let sql = "INSERT INTO sales (event_id, seats_sold, bookings, cancellations)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (event_id) DO UPDATE SET
                       seats_sold = sales.seats_sold + excluded.seats_sold,
                       bookings = sales.bookings + excluded.bookings,
                       cancellations = sales.cancellations + excluded.cancellations";
        let args = args![
            &sale.event_id,
            sale.seats_sold,
            sale.bookings,
            sale.cancellations
        ];
        self.conn.execute(sql, args).await?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqlEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        Ok(sql::write!(&self.db, (), |unit| rules::create_location(
            unit, &location
        ))?)
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        let id = id.to_owned();
        Ok(sql::read!(&self.db, |conn| location(conn, &id))?)
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        Ok(sql::read!(&self.db, |conn| locations(conn))?)
    }

    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError> {
        Ok(sql::write!(&self.db, (), |unit| rules::create_event(
            unit,
            &event,
            with_new_location
        ))?)
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        Ok(sql::write!(&self.db, (), |unit| rules::cancel_event(
            unit, &id
        ))?)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        Ok(sql::read!(&self.db, |conn| event_where(conn, "id", &id))?)
    }

    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError> {
        let name = name.to_owned();
        Ok(sql::read!(&self.db, |conn| event_where(
            conn, "name", &name
        ))?)
    }

    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError> {
        Ok(sql::read!(&self.db, |conn| events(conn, &page))?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut rule = rules::CountSales;
        Ok(sql::write!(&self.db, (), |unit| bus::apply_once(
            unit, &batch, &mut rule
        ))?)
    }

    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError> {
        let id = event_id.to_owned();
        Ok(sql::read!(&self.db, |conn| sales(conn, &id))?)
    }

    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError> {
        Ok(sql::read!(&self.db, |conn| all_sales(conn))?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        self.db.outbox()
    }

    async fn check(&self) -> Result<(), String> {
        self.db.check().await
    }
}
