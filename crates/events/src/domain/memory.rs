//! A unit of work in memory, for testing the rules without a database.

use bus::unit::Corrupt;
use contracts::Envelope;

use super::unit::UnitOfWork;
use super::{Event, EventStatus, Location, Sales};

/// Why a primitive failed; read only when a failing test prints it.
#[derive(Debug)]
pub struct Failed(#[allow(dead_code)] pub String);

impl From<Corrupt> for Failed {
    fn from(e: Corrupt) -> Self {
        Failed(e.0)
    }
}

#[derive(Default)]
pub struct Memory {
    pub locations: Vec<Location>,
    pub events: Vec<Event>,
    pub sales: Vec<Sales>,
    pub inbox: Vec<String>,
    pub emitted: Vec<Envelope>,
}

impl bus::Unit for Memory {
    type Error = Failed;

    async fn first_delivery(&mut self, message_id: &str) -> Result<bool, Failed> {
        if self.inbox.iter().any(|m| m == message_id) {
            return Ok(false);
        }
        self.inbox.push(message_id.to_owned());
        Ok(true)
    }

    async fn forget_delivery(&mut self, message_id: &str) -> Result<(), Failed> {
        self.inbox.retain(|m| m != message_id);
        Ok(())
    }

    async fn emit(&mut self, event: &Envelope) -> Result<(), Failed> {
        self.emitted.push(event.clone());
        Ok(())
    }
}

impl UnitOfWork for Memory {
    async fn insert_location(&mut self, location: &Location) -> Result<(), Failed> {
        if self.locations.iter().any(|l| l.id == location.id) {
            return Err(Failed(format!("location {} exists", location.id)));
        }
        self.locations.push(location.clone());
        Ok(())
    }

    async fn insert_event(&mut self, event: &Event) -> Result<(), Failed> {
        if !self.locations.iter().any(|l| l.id == event.location.id) {
            return Err(Failed(format!("no location {}", event.location.id)));
        }
        self.events.push(event.clone());
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, Failed> {
        Ok(self.events.iter().find(|e| e.id == id).cloned())
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, Failed> {
        let active =
            (self.events.iter_mut()).find(|e| e.id == id && e.status == EventStatus::Active);
        let Some(event) = active else {
            return Ok(false);
        };
        event.status = EventStatus::Cancelled;
        Ok(true)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), Failed> {
        let found = self.sales.iter_mut().find(|s| s.event_id == sale.event_id);
        let Some(figures) = found else {
            self.sales.push(sale.clone());
            return Ok(());
        };
        figures.seats_sold += sale.seats_sold;
        figures.bookings += sale.bookings;
        figures.cancellations += sale.cancellations;
        Ok(())
    }
}
