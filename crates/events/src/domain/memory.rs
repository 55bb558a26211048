//! A unit of work in memory, for testing the rules without a database.

use bus::unit::{InMemory, Refused};

use super::unit::UnitOfWork;
use super::{Event, EventStatus, Location, Sales};

/// The events service's tables, in memory.
#[derive(Default)]
pub struct Tables {
    pub locations: Vec<Location>,
    pub events: Vec<Event>,
    pub sales: Vec<Sales>,
}

pub type Memory = InMemory<Tables>;

impl UnitOfWork for Memory {
    async fn insert_location(&mut self, location: &Location) -> Result<(), Refused> {
        if self.state.locations.iter().any(|l| l.id == location.id) {
            return Err(Refused(format!("location {} exists", location.id)));
        }
        self.state.locations.push(location.clone());
        Ok(())
    }

    async fn insert_event(&mut self, event: &Event) -> Result<(), Refused> {
        if !self
            .state
            .locations
            .iter()
            .any(|l| l.id == event.location.id)
        {
            return Err(Refused(format!("no location {}", event.location.id)));
        }
        self.state.events.push(event.clone());
        Ok(())
    }

    async fn event(&mut self, id: &str) -> Result<Option<Event>, Refused> {
        Ok(self.state.events.iter().find(|e| e.id == id).cloned())
    }

    async fn mark_cancelled(&mut self, id: &str) -> Result<bool, Refused> {
        let active =
            (self.state.events.iter_mut()).find(|e| e.id == id && e.status == EventStatus::Active);
        let Some(event) = active else {
            return Ok(false);
        };
        event.status = EventStatus::Cancelled;
        Ok(true)
    }

    async fn add_sales(&mut self, sale: &Sales) -> Result<(), Refused> {
        let found = self
            .state
            .sales
            .iter_mut()
            .find(|s| s.event_id == sale.event_id);
        let Some(figures) = found else {
            self.state.sales.push(sale.clone());
            return Ok(());
        };
        figures.seats_sold += sale.seats_sold;
        figures.bookings += sale.bookings;
        figures.cancellations += sale.cancellations;
        Ok(())
    }
}
