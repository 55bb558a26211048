//! Bookings and the seat inventory of an event, and the rules for taking seats. No I/O here:
//! [`rules`] decides, driving a store's [`unit::UnitOfWork`], whose primitives each backend
//! writes in its own dialect.

#[cfg(test)]
mod memory;
pub mod rules;
pub mod unit;

use std::collections::HashMap;

pub use platform::{BookingId, Email, EventId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Active,
    /// Cancelled by the customer (or an admin on their behalf).
    Cancelled,
    /// The organiser cancelled the event.
    EventCancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cancelled => "cancelled",
            Self::EventCancelled => "event_cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "cancelled" => Some(Self::Cancelled),
            "event_cancelled" => Some(Self::EventCancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Booking {
    #[serde(rename = "ID")]
    #[schema(value_type = String)]
    pub id: BookingId,
    #[serde(rename = "EventID")]
    #[schema(value_type = String)]
    pub event_id: EventId,
    pub event_name: String,
    #[schema(minimum = 1)]
    pub seats: u32,
    /// When it was booked, Unix seconds.
    pub date: i64,
    pub status: BookingStatus,
    /// Empty for a guest.
    // `None` for a guest here; the API shows `""`, the string the reference's clients read.
    #[serde(
        rename = "UserID",
        serialize_with = "none_as_empty",
        deserialize_with = "empty_as_none"
    )]
    #[schema(value_type = String)]
    pub user_id: Option<UserId>,
    /// The customer's e-mail address (empty when unknown).
    pub email: String,
}

fn none_as_empty<S: serde::Serializer>(id: &Option<UserId>, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(id.as_deref().unwrap_or(""))
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(from: D) -> Result<Option<UserId>, D::Error> {
    let id = String::deserialize(from)?;
    Ok(Some(id).filter(|id| !id.is_empty()).map(UserId::from))
}

impl Booking {
    /// Who booked it.
    pub fn customer(&self) -> Customer {
        Customer {
            user_id: self.user_id.clone(),
            // Parsed before it was stored.
            email: Email::parse(&self.email).ok(),
        }
    }
}

/// Whether an event can be booked, as the bookings service knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SaleStatus {
    Active,
    Cancelled,
}

impl SaleStatus {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Availability {
    #[serde(rename = "EventID")]
    #[schema(value_type = String)]
    pub event_id: EventId,
    pub capacity: u32,
    pub available: u32,
    pub status: SaleStatus,
}

/// Who books: a signed-in user, or a guest, known by an e-mail address or not at all (the
/// reference UI books with `{"seats": n}` and nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub user_id: Option<UserId>,
    /// `None` for a guest who gave none: no mail is sent for such a booking.
    pub email: Option<Email>,
}

impl Customer {
    /// The signed-in user if there is one (an e-mail in the body is then ignored), else a guest
    /// with the e-mail address given, which must be valid if it is given at all.
    pub fn from_request(
        signed_in: Option<&platform::Claims>,
        email: Option<&str>,
    ) -> Result<Customer, Invalid> {
        if let Some(claims) = signed_in {
            return Ok(Customer {
                user_id: Some(claims.sub.as_str().into()),
                // Checked when the account was made.
                email: Email::parse(&claims.email).ok(),
            });
        }
        let email = (email.filter(|e| !e.trim().is_empty()))
            .map(Email::parse)
            .transpose()
            .map_err(Invalid)?;
        Ok(Customer {
            user_id: None,
            email,
        })
    }

    /// Who an event's limit of seats per customer counts against: the e-mail address when
    /// there is one (a signed-in user's, or a guest's: booking as a guest with one's own address
    /// counts the same), else the user; `None` for a guest who gave no address.
    pub fn limit_key(&self) -> Option<String> {
        if let Some(email) = &self.email {
            return Some(format!("email:{email}"));
        }
        self.user_id.as_ref().map(|id| format!("user:{id}"))
    }

    /// The e-mail address as bookings and events carry it: empty when there is none.
    pub fn email_text(&self) -> &str {
        self.email.as_ref().map_or("", Email::as_str)
    }

    pub fn is_guest(&self) -> bool {
        self.user_id.is_none()
    }

    /// Scopes an `Idempotency-Key` to its sender, so two customers' keys never collide. A guest
    /// who gave no e-mail has nothing to scope by: the key alone names the request, so such a
    /// client must use a random key (a UUID), as the key's replay carries the booking's token.
    pub fn scope_key(&self, key: &str) -> String {
        match &self.user_id {
            Some(id) => format!("user:{id}:{key}"),
            None => format!("guest:{}:{key}", self.email_text()),
        }
    }
}

/// Seats of one booking must be 1..=max.
pub fn seats(requested: Option<i64>, max: u32) -> Result<u32, Invalid> {
    match requested {
        Some(n) if n >= 1 && n <= i64::from(max) => Ok(n as u32),
        Some(n) => Err(Invalid(format!(
            "seats must be from 1 to {max} per booking, not {n}"
        ))),
        None => Err(Invalid("seats is required".into())),
    }
}

/// A booking to take, as handed to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBooking {
    pub id: BookingId,
    pub event_id: EventId,
    pub seats: u32,
    pub date: i64,
    pub customer: Customer,
    pub idempotency: Option<Idempotency>,
}

/// An `Idempotency-Key` (already scoped) and a fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

impl NewBooking {
    /// The booking this request becomes once its seats are taken for the event `event_name`.
    pub fn booked(&self, event_name: String) -> Booking {
        Booking {
            id: self.id.clone(),
            event_id: self.event_id.clone(),
            event_name,
            seats: self.seats,
            date: self.date,
            status: BookingStatus::Active,
            user_id: self.customer.user_id.clone(),
            email: self.customer.email_text().to_owned(),
        }
    }

    /// What must be equal for a retry with the same key to count as the same request.
    pub fn fingerprint(event_id: &str, seats: u32, customer: &Customer) -> String {
        format!(
            "{event_id}|{seats}|{}|{}",
            customer.user_id.as_deref().unwrap_or(""),
            customer.email_text()
        )
    }
}

/// The answer to a booking request. Stored with its idempotency key, so it must round-trip
/// through JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome")]
pub enum BookOutcome {
    Booked {
        booking: Booking,
    },
    NotEnoughSeats {
        available: u32,
    },
    EventCancelled,
    UnknownEvent,
    /// The customer would hold more than the event's limit per customer.
    OverLimit {
        limit: u32,
        held: u32,
    },
    /// The event limits seats per customer, and this guest gave no e-mail address to count by.
    CustomerRequired,
    /// The key was used before for a different request.
    KeyReused,
}

impl BookOutcome {
    /// Answers worth replaying for a retry with the same key. An unknown event is not: the
    /// event may simply not have reached this service yet.
    pub fn is_final(&self) -> bool {
        !matches!(self, BookOutcome::UnknownEvent | BookOutcome::KeyReused)
    }
}

/// An event's seats as a batch of bookings sees them: read from the store once, taken in
/// memory request by request, and written back as one change (the SQLite and PostgreSQL bookings
/// stores). Only for a store that holds the event's write lock for the whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stock {
    pub name: String,
    pub available: u32,
    pub on_sale: bool,
    /// The most seats one customer may hold ([`Customer::limit_key`]); `None`: no limit.
    pub per_customer: Option<u32>,
    /// Seats taken by this batch so far.
    pub taken: u32,
}

impl Stock {
    pub fn new(name: String, available: u32, on_sale: bool) -> Self {
        Self {
            name,
            available,
            on_sale,
            per_customer: None,
            taken: 0,
        }
    }

    pub fn per_customer(self, limit: Option<u32>) -> Self {
        Self {
            per_customer: limit,
            ..self
        }
    }

    /// Takes `seats` if the event is on sale and has that many left; otherwise says why not.
    pub fn take(&mut self, seats: u32) -> Result<(), Refused> {
        if !self.on_sale {
            return Err(Refused::EventCancelled);
        }
        if seats > self.available {
            return Err(Refused::NotEnoughSeats {
                available: self.available,
            });
        }
        self.available -= seats;
        self.taken += seats;
        Ok(())
    }
}

/// The seats a batch of bookings has seen, by event id: each event's [`Stock`] as read once
/// from the store, `None` for an event the store does not know.
pub type Stocks = HashMap<String, Option<Stock>>;

/// Takes `seats` the rules found free from the event's stock as a batch read it: what the SQLite
/// and PostgreSQL units write back once per batch. An error is a bug (seats taken unread, or
/// refused after all), said in words for the log.
pub fn take_in_batch(stocks: &mut Stocks, event_id: &str, seats: u32) -> Result<(), String> {
    let stock = stocks.get_mut(event_id).and_then(Option::as_mut);
    let stock = stock.ok_or_else(|| format!("seats of event {event_id} taken unread"))?;
    stock
        .take(seats)
        .map_err(|r| format!("event {event_id}: seats taken twice: {r:?}"))
}

/// Each event of `stocks` that gave seats, and how many: what a store writes back after the
/// batch.
pub fn seats_taken(stocks: &Stocks) -> impl Iterator<Item = (&str, u32)> {
    stocks.iter().filter_map(|(event_id, stock)| {
        stock
            .as_ref()
            .filter(|s| s.taken > 0)
            .map(|s| (event_id.as_str(), s.taken))
    })
}

/// Why [`rules::book`] (or [`Stock::take`]) gave no seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    UnknownEvent,
    EventCancelled,
    NotEnoughSeats { available: u32 },
    OverLimit { limit: u32, held: u32 },
    CustomerUnknown,
}

impl From<Refused> for BookOutcome {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::UnknownEvent => BookOutcome::UnknownEvent,
            Refused::EventCancelled => BookOutcome::EventCancelled,
            Refused::NotEnoughSeats { available } => BookOutcome::NotEnoughSeats { available },
            Refused::OverLimit { limit, held } => BookOutcome::OverLimit { limit, held },
            Refused::CustomerUnknown => BookOutcome::CustomerRequired,
        }
    }
}

/// What an `eventCreated` becomes in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On sale with this many seats.
    OnSale(u32),
    /// Its seats come from its location's halls, and no `locationCreated` of that location has
    /// arrived yet: the event is kept waiting for it, not refused (brokers do not order one
    /// entity's messages against another's).
    AwaitsLocation,
    /// Can never be sold; why, in words for the operator.
    Unsellable(String),
}

/// How many seats an event has: the capacity its `eventCreated` states (our events service
/// always states it), or else what its location's `halls` hold, once they are known (`None`:
/// no `locationCreated` yet). The reference's `eventCreated` names neither hall nor capacity:
/// its events take place at a location, not in a hall, so such an event has the whole
/// location, the seats of all its halls together (a location of one hall, the reference's
/// examples, gives that hall's seats). An event that names a hall but no capacity gets that
/// hall's seats.
pub fn placement(
    created: &contracts::EventCreated,
    halls: Option<&[contracts::Hall]>,
) -> Placement {
    let no_seats = |why: String| Placement::Unsellable(format!("event {}: {why}", created.id));
    if let Some(capacity) = created.capacity {
        return match capacity {
            0 => no_seats("its capacity is 0".into()),
            seats => Placement::OnSale(seats),
        };
    }
    let Some(halls) = halls else {
        return Placement::AwaitsLocation;
    };
    let hall = created.hall.trim();
    let seats = if hall.is_empty() {
        halls
            .iter()
            .fold(0u32, |sum, h| sum.saturating_add(h.capacity))
    } else {
        match halls
            .iter()
            .find(|h| h.name.trim().eq_ignore_ascii_case(hall))
        {
            Some(h) => h.capacity,
            None => {
                return no_seats(format!(
                    "its location {:?} has no hall {hall:?}",
                    created.location_id
                ));
            }
        }
    };
    match seats {
        0 => no_seats(format!(
            "its location {:?} has no seats",
            created.location_id
        )),
        seats => Placement::OnSale(seats),
    }
}

/// The key a location is stored under. The reference's Go events service sends a location's
/// id as the raw bytes of its MongoDB ObjectId (`string(bson.ObjectId)`), in `locationCreated`
/// and `eventCreated` alike, so the id can hold a NUL, which PostgreSQL text cannot; it is
/// escaped here (and `\`, so that no two ids meet), the same way for every store.
pub fn location_key(id: &str) -> String {
    if !id.contains(['\\', '\0']) {
        return id.to_owned();
    }
    id.replace('\\', "\\\\").replace('\0', "\\0")
}

#[cfg(test)]
mod placement_tests {
    use super::*;
    use contracts::{EventCreated, Hall};

    fn event(hall: &str, capacity: Option<u32>) -> EventCreated {
        EventCreated {
            id: "e".into(),
            name: "E".into(),
            location_id: "l".into(),
            start_date: chrono::DateTime::from_timestamp(1, 0).unwrap(),
            end_date: chrono::DateTime::from_timestamp(2, 0).unwrap(),
            hall: hall.into(),
            capacity,
            seats_per_customer: None,
        }
    }

    fn halls() -> Vec<Hall> {
        ["Main", "Studio"]
            .iter()
            .zip([120, 30])
            .map(|(name, capacity)| Hall {
                name: (*name).into(),
                location: String::new(),
                capacity,
            })
            .collect()
    }

    #[test]
    fn a_stated_capacity_is_the_events_whatever_its_location() {
        assert_eq!(
            placement(&event("Main", Some(50)), None),
            Placement::OnSale(50)
        );
        assert_eq!(
            placement(&event("", Some(50)), Some(&halls())),
            Placement::OnSale(50)
        );
        assert!(matches!(
            placement(&event("Main", Some(0)), None),
            Placement::Unsellable(_)
        ));
    }

    #[test]
    fn the_references_event_waits_for_its_location_and_then_has_all_its_halls() {
        let reference = event("", None);
        assert_eq!(placement(&reference, None), Placement::AwaitsLocation);
        assert_eq!(
            placement(&reference, Some(&halls())),
            Placement::OnSale(150)
        );
        assert_eq!(
            placement(&reference, Some(&halls()[1..])),
            Placement::OnSale(30)
        );
        assert!(matches!(
            placement(&reference, Some(&[])),
            Placement::Unsellable(_)
        ));
    }

    #[test]
    fn an_event_that_names_a_hall_but_no_capacity_gets_that_halls_seats() {
        assert_eq!(
            placement(&event(" studio", None), Some(&halls())),
            Placement::OnSale(30)
        );
        assert!(matches!(
            placement(&event("Attic", None), Some(&halls())),
            Placement::Unsellable(_)
        ));
    }

    #[test]
    fn location_keys_keep_plain_ids_and_never_hold_a_nul() {
        assert_eq!(
            location_key("5f1e7c9a2b3c4d5e6f708192"),
            "5f1e7c9a2b3c4d5e6f708192"
        );
        let raw = "\u{fffd}a\0b";
        assert!(!location_key(raw).contains('\0'));
        assert_ne!(location_key("a\0"), location_key("a\\0"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::{Claims, Role};

    #[test]
    fn stock_gives_seats_until_none_are_left_and_none_once_cancelled() {
        let mut stock = Stock::new("Gig".into(), 5, true);
        assert_eq!(stock.take(3), Ok(()));
        assert_eq!(stock.take(3), Err(Refused::NotEnoughSeats { available: 2 }));
        assert_eq!(stock.take(2), Ok(()));
        assert_eq!(stock.take(1), Err(Refused::NotEnoughSeats { available: 0 }));
        assert_eq!((stock.available, stock.taken), (0, 5));
        let mut cancelled = Stock::new("Gig".into(), 5, false);
        assert_eq!(cancelled.take(1), Err(Refused::EventCancelled));
        assert_eq!(cancelled.taken, 0);
    }

    #[test]
    fn a_batch_writes_back_only_what_it_took() {
        let mut stocks = Stocks::new();
        stocks.insert("gig".into(), Some(Stock::new("Gig".into(), 5, true)));
        stocks.insert("off".into(), Some(Stock::new("Off".into(), 5, false)));
        stocks.insert("unknown".into(), None);
        let gig = stocks.get_mut("gig").unwrap().as_mut().unwrap();
        assert_eq!(gig.take(2), Ok(()));
        assert_eq!(gig.take(4), Err(Refused::NotEnoughSeats { available: 3 }));
        let taken: Vec<(&str, u32)> = seats_taken(&stocks).collect();
        assert_eq!(taken, [("gig", 2)]);
    }

    #[test]
    fn seats_must_be_within_one_and_max() {
        assert_eq!(seats(Some(1), 10), Ok(1));
        assert_eq!(seats(Some(10), 10), Ok(10));
        for bad in [Some(0), Some(-1), Some(11), None] {
            assert!(seats(bad, 10).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_guest_may_give_no_email_but_not_a_bad_one_and_a_user_books_as_themselves() {
        let anonymous = Customer::from_request(None, None).unwrap();
        assert_eq!(anonymous.email, None);
        assert!(anonymous.is_guest());
        assert_eq!(Customer::from_request(None, Some("  ")).unwrap(), anonymous);
        assert!(Customer::from_request(None, Some("nope")).is_err());
        let guest = Customer::from_request(None, Some(" Guest@Example.com")).unwrap();
        assert_eq!(
            guest,
            Customer {
                user_id: None,
                email: Email::parse("guest@example.com").ok()
            }
        );
        let claims = Claims {
            sub: "u1".into(),
            email: "u@x.io".into(),
            role: Role::Customer,
            exp: 0,
            iat: 0,
        };
        let user = Customer::from_request(Some(&claims), Some("other@x.io")).unwrap();
        assert_eq!(user.user_id.as_deref(), Some("u1"));
        assert_eq!(user.email_text(), "u@x.io");
        assert_ne!(user.scope_key("k"), guest.scope_key("k"));
    }

    #[test]
    fn outcomes_round_trip_through_json() {
        let outcome = BookOutcome::NotEnoughSeats { available: 3 };
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(serde_json::from_str::<BookOutcome>(&json).unwrap(), outcome);
    }
}

/// May this caller see or cancel this booking?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Not signed in, and signing in would help.
    SignIn,
    /// A guest booking, and the caller does not hold its token.
    NeedsToken,
    Forbidden,
}

/// Admins may do anything; a signed-in customer's booking is theirs alone; a guest booking is
/// for whoever holds its management token, which only its answer and its confirmation mail
/// carry. Its id alone opens nothing: ids travel in URLs, logs and the bus. A signed-in user
/// whose e-mail matches a guest booking's is not its owner: addresses are not verified.
/// Reading and cancelling take the same right.
pub fn access(booking: &Booking, who: Option<&platform::Claims>, holds_token: bool) -> Access {
    if who.is_some_and(|c| c.is_admin()) {
        return Access::Allowed;
    }
    if let Some(owner) = &booking.user_id {
        return match who {
            None => Access::SignIn,
            Some(c) if *owner == c.sub => Access::Allowed,
            Some(_) => Access::Forbidden,
        };
    }
    if holds_token {
        Access::Allowed
    } else {
        Access::NeedsToken
    }
}

#[cfg(test)]
mod access_tests {
    use super::*;
    use platform::{Claims, Role};

    fn booking(user_id: &str) -> Booking {
        Booking {
            id: "b".into(),
            event_id: "e".into(),
            event_name: "E".into(),
            seats: 1,
            date: 0,
            status: BookingStatus::Active,
            user_id: Some(user_id.into()).filter(|id: &UserId| !id.is_empty()),
            email: "owner@x.io".into(),
        }
    }

    fn claims(sub: &str, role: Role) -> Claims {
        Claims {
            sub: sub.into(),
            email: format!("{sub}@x.io"),
            role,
            exp: 0,
            iat: 0,
        }
    }

    #[test]
    fn a_users_booking_is_theirs_and_the_admins() {
        let b = booking("u1");
        assert_eq!(access(&b, None, false), Access::SignIn);
        assert_eq!(access(&b, None, true), Access::SignIn);
        assert_eq!(
            access(&b, Some(&claims("u1", Role::Customer)), false),
            Access::Allowed
        );
        assert_eq!(
            access(&b, Some(&claims("u2", Role::Customer)), false),
            Access::Forbidden
        );
        assert_eq!(
            access(&b, Some(&claims("a", Role::Admin)), false),
            Access::Allowed
        );
    }

    #[test]
    fn a_guest_booking_opens_with_its_token_or_for_an_admin_only() {
        let b = booking("");
        assert_eq!(access(&b, None, false), Access::NeedsToken);
        assert_eq!(access(&b, None, true), Access::Allowed);
        // The same address signed in is not enough: nobody verified it.
        let same_email = Claims {
            email: "owner@x.io".into(),
            ..claims("u1", Role::Customer)
        };
        assert_eq!(access(&b, Some(&same_email), false), Access::NeedsToken);
        assert_eq!(
            access(&b, Some(&claims("a", Role::Admin)), false),
            Access::Allowed
        );
    }
}
