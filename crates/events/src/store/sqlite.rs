use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bus::unit::Corrupt;
use bus::{SqliteUnit, run_now};
use contracts::DomainEvent;
use sqlite::rusqlite::{Connection, OptionalExtension, Row, params};
use sqlite::{Db, DbError, Options, inbox, outbox};

use super::{EventStore, Page, StoreError};
use crate::domain::unit::UnitOfWork;
use crate::domain::{Event, EventStatus, Hall, Location, Sales, rules};

const SCHEMA: &str = "
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
const EVENT_SEATS_PER_CUSTOMER: &str = "ALTER TABLE events ADD COLUMN seats_per_customer INTEGER";

const EVENT_COLUMNS: &str =
    "e.id, e.name, e.duration, e.start_date, e.end_date, e.hall, e.capacity, e.status,
     e.seats_per_customer, l.id, l.name, l.address, l.country, l.open_time, l.close_time, l.halls";

pub struct SqliteEventStore {
    db: Db,
}

impl SqliteEventStore {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(
            path,
            Options {
                migrations: vec![
                    SCHEMA,
                    EVENT_SEATS_PER_CUSTOMER,
                    outbox::MIGRATION,
                    inbox::MIGRATION,
                ],
                ..Options::default()
            },
        )?;
        Ok(Self { db })
    }
}

fn json_error(column: usize, e: serde_json::Error) -> sqlite::rusqlite::Error {
    sqlite::rusqlite::Error::FromSqlConversionFailure(
        column,
        sqlite::rusqlite::types::Type::Text,
        Box::new(e),
    )
}

fn location_at(row: &Row<'_>, first: usize) -> sqlite::rusqlite::Result<Location> {
    let halls: String = row.get(first + 6)?;
    Ok(Location {
        id: row.get(first)?,
        name: row.get(first + 1)?,
        address: row.get(first + 2)?,
        country: row.get(first + 3)?,
        open_time: row.get(first + 4)?,
        close_time: row.get(first + 5)?,
        halls: serde_json::from_str::<Vec<Hall>>(&halls).map_err(|e| json_error(first + 6, e))?,
    })
}

fn event_row(row: &Row<'_>) -> sqlite::rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        name: row.get(1)?,
        duration: row.get(2)?,
        start_date: row.get(3)?,
        end_date: row.get(4)?,
        hall: row.get(5)?,
        capacity: row.get(6)?,
        status: sqlite::stored(row, 7, "event status", EventStatus::parse)?,
        seats_per_customer: row.get(8)?,
        location: location_at(row, 9)?,
    })
}

fn select_event(
    conn: &Connection,
    filter: &str,
    arg: &str,
) -> sqlite::rusqlite::Result<Option<Event>> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e JOIN locations l ON l.id = e.location_id WHERE {filter} ORDER BY e.seq LIMIT 1"
    ))?
    .query_row([arg], event_row)
    .optional()
}

impl UnitOfWork for SqliteUnit<'_> {
    async fn insert_location(&mut self, l: &Location) -> Result<(), DbError> {
        let halls = serde_json::to_string(&l.halls).map_err(|e| Corrupt(e.to_string()))?;
        self.conn
            .prepare_cached(
                "INSERT INTO locations (id, name, address, country, open_time, close_time, halls)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                l.id,
                l.name,
                l.address,
                l.country,
                l.open_time,
                l.close_time,
                halls
            ])?;
        Ok(())
    }

    async fn insert_event(&mut self, event: &Event) -> Result<(), DbError> {
        self.conn.prepare_cached(
            "INSERT INTO events (id, name, duration, start_date, end_date, location_id, hall, capacity, status, seats_per_customer)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            event.id,
            event.name,
            event.duration,
            event.start_date,
            event.end_date,
            event.location.id,
            event.hall,
            event.capacity,
            event.status.as_str(),
            event.seats_per_customer
        ])?;
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, DbError> {
        Ok(select_event(self.conn, "e.id = ?1", id)?)
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, DbError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE events SET status = 'cancelled' WHERE id = ?1 AND status = 'active'",
            )?
            .execute([id])?;
        Ok(changed == 1)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), DbError> {
        self.conn.prepare_cached(
            "INSERT INTO sales (event_id, seats_sold, bookings, cancellations) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (event_id) DO UPDATE SET
                 seats_sold = seats_sold + excluded.seats_sold,
                 bookings = bookings + excluded.bookings,
                 cancellations = cancellations + excluded.cancellations",
        )?
        .execute(params![sale.event_id, sale.seats_sold, sale.bookings, sale.cancellations])?;
        Ok(())
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| run_now(rules::create_location(&mut SqliteUnit::new(c), &location))?)
            .await?)
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, name, address, country, open_time, close_time, halls FROM locations WHERE id = ?1",
                )?
                .query_row([id], |r| location_at(r, 0))
                .optional()
            })
            .await?)
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        Ok(self
            .db
            .read(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, name, address, country, open_time, close_time, halls FROM locations ORDER BY seq",
                )?;
                let rows = stmt.query_map([], |r| location_at(r, 0))?;
                rows.collect()
            })
            .await?)
    }

    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError> {
        Ok(self
            .db
            .write(move |c| {
                let mut unit = SqliteUnit::new(c);
                run_now(rules::create_event(&mut unit, &event, with_new_location))?
            })
            .await?)
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .write(move |c| run_now(rules::cancel_event(&mut SqliteUnit::new(c), &id))?)
            .await?)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let id = id.to_owned();
        Ok(self
            .db
            .read(move |c| select_event(c, "e.id = ?1", &id))
            .await?)
    }

    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError> {
        let name = name.to_owned();
        Ok(self
            .db
            .read(move |c| select_event(c, "e.name = ?1", &name))
            .await?)
    }

    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                let after_seq: i64 = match &page.after {
                    Some(id) => c
                        .query_row("SELECT seq FROM events WHERE id = ?1", [id], |r| r.get(0))
                        .optional()?
                        .unwrap_or(i64::MAX),
                    None => 0,
                };
                let limit = page.limit.map(|l| l as i64).unwrap_or(-1);
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events e JOIN locations l ON l.id = e.location_id
                     WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![after_seq, limit], event_row)?;
                rows.collect()
            })
            .await?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        Ok(self
            .db
            .write(move |c| {
                let mut unit = SqliteUnit::new(c);
                run_now(bus::apply_once(&mut unit, &batch, &mut rules::CountSales))?
            })
            .await?)
    }

    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError> {
        let event_id = event_id.to_owned();
        Ok(self
            .db
            .read(move |c| {
                c.query_row(
                    "SELECT event_id, seats_sold, bookings, cancellations FROM sales WHERE event_id = ?1",
                    [event_id],
                    sales_row,
                )
                .optional()
            })
            .await?)
    }

    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError> {
        Ok(self
            .db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT s.event_id, s.seats_sold, s.bookings, s.cancellations
                     FROM sales s LEFT JOIN events e ON e.id = s.event_id ORDER BY e.seq",
                )?;
                let rows = stmt.query_map([], sales_row)?;
                rows.collect()
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

fn sales_row(r: &Row<'_>) -> sqlite::rusqlite::Result<Sales> {
    Ok(Sales {
        event_id: r.get(0)?,
        seats_sold: r.get(1)?,
        bookings: r.get(2)?,
        cancellations: r.get(3)?,
    })
}
