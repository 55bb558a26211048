//! A unit of work in memory, for testing the rules without a database. It is not a store: no
//! concurrency, no durability, and the whole state lives in the unit.

use std::collections::BTreeMap;

use bus::unit::Corrupt;
use contracts::{Envelope, EventCreated, Hall};

use super::unit::{Earlier, OnSale, UnitOfWork, Waiting};
use super::{Booking, BookingStatus, Idempotency, Stock};

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
    pub inventory: BTreeMap<String, (Stock, u32)>,
    pub bookings: Vec<Booking>,
    pub answers: BTreeMap<String, Earlier>,
    pub holdings: BTreeMap<(String, String), u32>,
    pub locations: BTreeMap<String, Vec<Hall>>,
    pub waiting: BTreeMap<String, (String, Waiting)>,
    pub inbox: Vec<String>,
    pub emitted: Vec<Envelope>,
}

impl Memory {
    pub fn available(&self, event_id: &str) -> Option<u32> {
        self.inventory.get(event_id).map(|(s, _)| s.available)
    }
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
    async fn claim_key(&mut self, idem: &Idempotency, _: i64) -> Result<Option<Earlier>, Failed> {
        Ok(self.answers.get(&idem.key).cloned())
    }

    async fn record_answer(
        &mut self,
        idem: &Idempotency,
        _: i64,
        answer: Option<&str>,
    ) -> Result<(), Failed> {
        if let Some(answer) = answer {
            let earlier = Earlier {
                fingerprint: idem.fingerprint.clone(),
                answer: answer.to_owned(),
            };
            self.answers.insert(idem.key.clone(), earlier);
        }
        Ok(())
    }

    async fn stock(&mut self, event_id: &str) -> Result<Option<Stock>, Failed> {
        Ok(self.inventory.get(event_id).map(|(s, _)| s.clone()))
    }

    async fn take(&mut self, event_id: &str, seats: u32) -> Result<(), Failed> {
        let (stock, _) = self
            .inventory
            .get_mut(event_id)
            .ok_or(Failed("no event".into()))?;
        stock
            .take(seats)
            .map_err(|r| Failed(format!("taken though refused: {r:?}")))
    }

    async fn give_back(&mut self, event_id: &str, seats: u32) -> Result<(), Failed> {
        let (stock, _) = self
            .inventory
            .get_mut(event_id)
            .ok_or(Failed("no event".into()))?;
        stock.available += seats;
        Ok(())
    }

    async fn held(&mut self, event_id: &str, customer: &str) -> Result<u32, Failed> {
        let key = (event_id.to_owned(), customer.to_owned());
        Ok(self.holdings.get(&key).copied().unwrap_or(0))
    }

    async fn hold(&mut self, event: &str, customer: &str, _: u32, now: u32) -> Result<(), Failed> {
        self.holdings
            .insert((event.to_owned(), customer.to_owned()), now);
        Ok(())
    }

    async fn insert_booking(&mut self, booking: &Booking) -> Result<(), Failed> {
        self.bookings.push(booking.clone());
        Ok(())
    }

    async fn mark_released(
        &mut self,
        booking_id: &str,
        status: BookingStatus,
    ) -> Result<Option<Booking>, Failed> {
        let found = self.bookings.iter_mut().find(|b| b.id == booking_id);
        let Some(booking) = found.filter(|b| b.status == BookingStatus::Active) else {
            return Ok(None);
        };
        let before = booking.clone();
        booking.status = status;
        Ok(Some(before))
    }

    async fn booking(&mut self, booking_id: &str) -> Result<Option<Booking>, Failed> {
        Ok(self.bookings.iter().find(|b| b.id == booking_id).cloned())
    }

    async fn active_bookings(&mut self, event_id: &str) -> Result<Vec<String>, Failed> {
        Ok((self.bookings.iter())
            .filter(|b| b.event_id == event_id && b.status == BookingStatus::Active)
            .map(|b| b.id.clone())
            .collect())
    }

    async fn event_known(&mut self, event_id: &str) -> Result<bool, Failed> {
        Ok(self.inventory.contains_key(event_id) || self.waiting.contains_key(event_id))
    }

    async fn halls(&mut self, location: &str) -> Result<Option<Vec<Hall>>, Failed> {
        Ok(self.locations.get(location).cloned())
    }

    async fn record_halls(&mut self, location: &str, halls: &[Hall]) -> Result<Vec<Hall>, Failed> {
        let first = self.locations.entry(location.to_owned());
        Ok(first.or_insert_with(|| halls.to_vec()).clone())
    }

    async fn put_on_sale(&mut self, sale: OnSale<'_>) -> Result<(), Failed> {
        let stock = Stock::new(sale.name.to_owned(), sale.capacity, !sale.cancelled)
            .per_customer(sale.seats_per_customer);
        let entry = self.inventory.entry(sale.event_id.to_owned());
        entry.or_insert((stock, sale.capacity));
        Ok(())
    }

    async fn wait_for_location(
        &mut self,
        event: &EventCreated,
        location: &str,
    ) -> Result<(), Failed> {
        let waiting = Waiting {
            event: event.clone(),
            cancelled: false,
        };
        self.waiting
            .insert(event.id.clone(), (location.to_owned(), waiting));
        Ok(())
    }

    async fn waiting_at(&mut self, location: &str) -> Result<Vec<Waiting>, Failed> {
        Ok((self.waiting.values())
            .filter(|(at, _)| at == location)
            .map(|(_, w)| w.clone())
            .collect())
    }

    async fn stop_waiting(&mut self, event_id: &str) -> Result<(), Failed> {
        self.waiting.remove(event_id);
        Ok(())
    }

    async fn cancel_waiting(&mut self, event_id: &str) -> Result<bool, Failed> {
        match self.waiting.get_mut(event_id) {
            Some((_, w)) => {
                w.cancelled = true;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn stop_sale(&mut self, event_id: &str) -> Result<bool, Failed> {
        match self.inventory.get_mut(event_id) {
            Some((stock, _)) => {
                stock.on_sale = false;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
