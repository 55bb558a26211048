//! A unit of work in memory, for testing the rules without a database. It is not a store: no
//! concurrency, no durability, and the whole state lives in the unit.

use std::collections::BTreeMap;

use bus::unit::{InMemory, Refused};
use contracts::{EventCreated, Hall};

use super::BookingId;
use super::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use super::{Booking, BookingStatus, Idempotency, Stock};

/// The bookings service's tables, in memory.
#[derive(Default)]
pub struct Tables {
    pub inventory: BTreeMap<String, (Stock, u32)>,
    pub bookings: Vec<Booking>,
    pub answers: BTreeMap<String, Earlier>,
    pub holdings: BTreeMap<(String, String), u32>,
    pub locations: BTreeMap<String, Vec<Hall>>,
    pub waiting: BTreeMap<String, (String, Waiting)>,
}

impl Tables {
    pub fn available(&self, event_id: &str) -> Option<u32> {
        self.inventory.get(event_id).map(|(s, _)| s.available)
    }
}

pub type Memory = InMemory<Tables>;

impl UnitOfWork for Memory {
    async fn claim_key(&mut self, idem: &Idempotency, _: i64) -> Result<Option<Earlier>, Refused> {
        Ok(self.state.answers.get(&idem.key).cloned())
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        _: i64,
        answer: Option<&str>,
    ) -> Result<(), Refused> {
        if let Some(answer) = answer {
            let earlier = Earlier {
                fingerprint: idem.fingerprint.clone(),
                answer: answer.to_owned(),
            };
            self.state.answers.insert(idem.key.clone(), earlier);
        }
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, Refused> {
        Ok(self.state.inventory.get(event_id).map(|(s, _)| s.clone()))
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), Refused> {
        let (stock, _) = self
            .state
            .inventory
            .get_mut(event_id)
            .ok_or(Refused("no event".into()))?;
        stock
            .take(seats)
            .map_err(|r| Refused(format!("taken though refused: {r:?}")))
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), Refused> {
        let (stock, _) = self
            .state
            .inventory
            .get_mut(event_id)
            .ok_or(Refused("no event".into()))?;
        stock.available += seats;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, Refused> {
        let key = (event_id.to_owned(), customer.to_owned());
        Ok(self.state.holdings.get(&key).copied().unwrap_or(0))
    }

    async fn hold(&mut self, event: &str, customer: &str, _: u32, now: u32) -> Result<(), Refused> {
        self.state
            .holdings
            .insert((event.to_owned(), customer.to_owned()), now);
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), Refused> {
        self.state.bookings.push(booking.clone());
        Ok(())
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, Refused> {
        let found = self.state.bookings.iter_mut().find(|b| b.id == booking_id);
        let Some(booking) = found.filter(|b| b.status == BookingStatus::Active) else {
            return Ok(None);
        };
        let before = booking.clone();
        booking.status = status;
        Ok(Some(before))
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, Refused> {
        Ok(self
            .state
            .bookings
            .iter()
            .find(|b| b.id == booking_id)
            .cloned())
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<BookingId>, Refused> {
        Ok((self.state.bookings.iter())
            .filter(|b| b.event_id == event_id && b.status == BookingStatus::Active)
            .map(|b| b.id.clone())
            .collect())
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, Refused> {
        Ok(
            self.state.inventory.contains_key(event_id)
                || self.state.waiting.contains_key(event_id),
        )
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, Refused> {
        Ok(self.state.locations.get(location).cloned())
    }

    async fn record_halls(&mut self, location: &str, halls: &[Hall]) -> Result<Vec<Hall>, Refused> {
        let first = self.state.locations.entry(location.to_owned());
        Ok(first.or_insert_with(|| halls.to_vec()).clone())
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), Refused> {
        let stock = Stock::new(sale.name.to_owned(), sale.capacity, !sale.cancelled)
            .per_customer(sale.seats_per_customer);
        let entry = self.state.inventory.entry(sale.event_id.to_owned());
        entry.or_insert((stock, sale.capacity));
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), Refused> {
        let waiting = Waiting {
            event: event.clone(),
            cancelled: false,
        };
        self.state
            .waiting
            .insert(event.id.clone(), (location.to_owned(), waiting));
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, Refused> {
        Ok((self.state.waiting.values())
            .filter(|(at, _)| at == location)
            .map(|(_, w)| w.clone())
            .collect())
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), Refused> {
        self.state.waiting.remove(event_id);
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, Refused> {
        match self.state.waiting.get_mut(event_id) {
            Some((_, w)) => {
                w.cancelled = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, Refused> {
        match self.state.inventory.get_mut(event_id) {
            Some((stock, _)) => {
                stock.on_sale = false;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
