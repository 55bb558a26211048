use std::sync::Arc;

use async_trait::async_trait;
use bus::unit::Corrupt;
use contracts::DomainEvent;
use postgres::sqlx::postgres::PgRow;
use postgres::sqlx::{self, Row};
use postgres::{Options, Pg, PgError, PgUnit, inbox, int, outbox};

use super::{EventStore, Page, StoreError};
use crate::domain::unit::UnitOfWork;
use crate::domain::{Event, EventStatus, Hall, Location, Sales, rules};

const SCHEMA: &str = "
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
    "l.id AS l_id, l.name AS l_name, l.address, l.country, l.open_time, l.close_time, l.halls";

/// The events service's tables in PostgreSQL, in the schema `events`.
pub struct PgEventStore {
    pg: Pg,
}

impl PgEventStore {
    /// Prepares the store without connecting; see [`Pg::connect_lazy`].
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let pg = Pg::connect_lazy(
            url,
            Options {
                schema: "events".into(),
                migrations: vec![SCHEMA, outbox::MIGRATION, inbox::MIGRATION],
                max_connections: 8,
            },
        )?;
        Ok(Self { pg })
    }

    /// Creates the tables now rather than on first use.
    pub async fn migrate(&self) -> Result<(), PgError> {
        self.pg.migrate().await
    }
}

fn location_row(row: &PgRow) -> Result<Location, sqlx::Error> {
    let halls: String = row.try_get("halls")?;
    Ok(Location {
        id: row.try_get("l_id")?,
        name: row.try_get("l_name")?,
        address: row.try_get("address")?,
        country: row.try_get("country")?,
        open_time: int(row, "open_time")?,
        close_time: int(row, "close_time")?,
        halls: serde_json::from_str::<Vec<Hall>>(&halls).map_err(|e| {
            sqlx::Error::ColumnDecode {
                index: "halls".into(),
                source: Box::new(e),
            }
        })?,
    })
}

fn event_row(row: &PgRow) -> Result<Event, sqlx::Error> {
    Ok(Event {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        duration: int(row, "duration")?,
        start_date: row.try_get("start_date")?,
        end_date: row.try_get("end_date")?,
        hall: row.try_get("hall")?,
        capacity: int(row, "capacity")?,
        status: postgres::stored(row, "status", "event status", EventStatus::parse)?,
        seats_per_customer: optional_int(row, "seats_per_customer")?,
        location: location_row(row)?,
    })
}

/// A nullable integer column, as [`int`] reads one that is not.
fn optional_int<T: TryFrom<i64>>(row: &PgRow, column: &str) -> Result<Option<T>, sqlx::Error> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| {
            T::try_from(v).map_err(|_| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: format!("{v} is out of range").into(),
            })
        })
        .transpose()
}

fn select_events(filter: &str) -> String {
    format!(
        "SELECT e.id, e.name, e.duration, e.start_date, e.end_date, e.hall, e.capacity, e.status,
                e.seats_per_customer, {LOCATION_COLUMNS}
         FROM events e JOIN locations l ON l.id = e.location_id WHERE {filter} ORDER BY e.seq"
    )
}

async fn event_where<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    filter: &str,
    arg: &str,
) -> Result<Option<Event>, PgError> {
    let row = postgres::query(format!("{} LIMIT 1", select_events(filter)))
        .bind(arg)
        .fetch_optional(executor)
        .await?;
    Ok(row.as_ref().map(event_row).transpose()?)
}

impl UnitOfWork for PgUnit<'_> {
    async fn insert_location(&mut self, l: &Location) -> Result<(), PgError> {
        let halls = serde_json::to_string(&l.halls).map_err(|e| Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO locations (id, name, address, country, open_time, close_time, halls)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&l.id)
        .bind(&l.name)
        .bind(&l.address)
        .bind(&l.country)
        .bind(i64::from(l.open_time))
        .bind(i64::from(l.close_time))
        .bind(halls)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn insert_event(&mut self, event: &Event) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO events (id, name, duration, start_date, end_date, location_id, hall, capacity, status, seats_per_customer)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.id)
        .bind(&event.name)
        .bind(i64::from(event.duration))
        .bind(event.start_date)
        .bind(event.end_date)
        .bind(&event.location.id)
        .bind(&event.hall)
        .bind(i64::from(event.capacity))
        .bind(event.status.as_str())
        .bind(event.seats_per_customer.map(i64::from))
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, PgError> {
        event_where(&mut *self.conn, "e.id = $1", id).await
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, PgError> {
        let changed = sqlx::query(
            "UPDATE events SET status = 'cancelled' WHERE id = $1 AND status = 'active'",
        )
        .bind(id)
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO sales (event_id, seats_sold, bookings, cancellations) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO UPDATE SET
                 seats_sold = sales.seats_sold + excluded.seats_sold,
                 bookings = sales.bookings + excluded.bookings,
                 cancellations = sales.cancellations + excluded.cancellations",
        )
        .bind(&sale.event_id)
        .bind(sale.seats_sold)
        .bind(sale.bookings)
        .bind(sale.cancellations)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }
}

fn sales_row(r: &PgRow) -> Result<Sales, sqlx::Error> {
    Ok(Sales {
        event_id: r.try_get("event_id")?,
        seats_sold: r.try_get("seats_sold")?,
        bookings: r.try_get("bookings")?,
        cancellations: r.try_get("cancellations")?,
    })
}

#[async_trait]
impl EventStore for PgEventStore {
    async fn create_location(&self, location: Location) -> Result<(), StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        rules::create_location(&mut unit, &location).await?;
        let caused = unit.caused;
        Ok(self.pg.commit(tx, &caused).await?)
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        let query = format!("SELECT {LOCATION_COLUMNS} FROM locations l WHERE l.id = $1");
        Ok(self
            .pg
            .fetch_optional(postgres::query(query).bind(id), location_row)
            .await?)
    }

    async fn locations(&self) -> Result<Vec<Location>, StoreError> {
        let query = format!("SELECT {LOCATION_COLUMNS} FROM locations l ORDER BY l.seq");
        Ok(self
            .pg
            .fetch_all(postgres::query(query), location_row)
            .await?)
    }

    async fn create_event(&self, event: Event, with_new_location: bool) -> Result<(), StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        rules::create_event(&mut unit, &event, with_new_location).await?;
        let caused = unit.caused;
        Ok(self.pg.commit(tx, &caused).await?)
    }

    async fn cancel_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        let event = rules::cancel_event(&mut unit, id).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(event)
    }

    async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        Ok(event_where(self.pg.pool().await?, "e.id = $1", id).await?)
    }

    async fn event_by_name(&self, name: &str) -> Result<Option<Event>, StoreError> {
        Ok(event_where(self.pg.pool().await?, "e.name = $1", name).await?)
    }

    async fn events(&self, page: Page) -> Result<Vec<Event>, StoreError> {
        // After an unknown id comes nothing, as in SQLite.
        let query = format!(
            "{} LIMIT $2",
            select_events(
                "e.seq > CASE WHEN $1::text IS NULL THEN 0
                 ELSE COALESCE((SELECT seq FROM events WHERE id = $1), 9223372036854775807) END"
            )
        );
        let limit = page.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        Ok(self
            .pg
            .fetch_all(
                postgres::query(query).bind(page.after).bind(limit),
                event_row,
            )
            .await?)
    }

    async fn apply(
        &self,
        batch: Vec<(String, DomainEvent)>,
    ) -> Result<Vec<bus::Outcome>, StoreError> {
        let mut tx = self.pg.begin().await?;
        let mut unit = PgUnit::new(&mut tx, ());
        let outcomes = bus::apply_once(&mut unit, &batch, &mut rules::CountSales).await?;
        let caused = unit.caused;
        self.pg.commit(tx, &caused).await?;
        Ok(outcomes)
    }

    async fn sales(&self, event_id: &str) -> Result<Option<Sales>, StoreError> {
        let query = sqlx::query(
            "SELECT event_id, seats_sold, bookings, cancellations FROM sales WHERE event_id = $1",
        )
        .bind(event_id);
        Ok(self.pg.fetch_optional(query, sales_row).await?)
    }

    async fn all_sales(&self) -> Result<Vec<Sales>, StoreError> {
        // NULLS FIRST: figures of an event this service does not know come first, as in SQLite.
        let query = sqlx::query(
            "SELECT s.event_id, s.seats_sold, s.bookings, s.cancellations
             FROM sales s LEFT JOIN events e ON e.id = s.event_id
             ORDER BY e.seq NULLS FIRST, s.event_id",
        );
        Ok(self.pg.fetch_all(query, sales_row).await?)
    }

    fn outbox(&self) -> Arc<dyn bus::Outbox> {
        Arc::new(postgres::PgOutbox::new(self.pg.clone()))
    }

    async fn check(&self) -> Result<(), String> {
        self.pg.check().await
    }
}
