//! The mails MyEvents sends, one per fact, and what each says. No I/O here.
//!
//! Each mail's id is derived from the fact it reports (`booked-<booking id>`, …), not drawn at
//! random: the same fact told twice (a redelivered message) names the same mail, which the store
//! keeps once and the file transport writes once.
//!
//! What the service decides with its store is in [`rules`], over the storage primitives of
//! [`unit`].

pub mod rules;
pub mod unit;

use chrono::{DateTime, Utc};
use platform::LinkSigner;
use platform::links;

/// A fact worth an e-mail, with what the mail needs to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Booked {
        booking_id: String,
        event: EventInfo,
        seats: u32,
        email: String,
        /// Booked without signing in: the mail carries the link that manages the booking.
        guest: bool,
    },
    /// The customer (or an admin for them) cancelled the booking.
    BookingCancelled {
        booking_id: String,
        event: EventInfo,
        seats: u32,
        email: String,
    },
    /// The organiser cancelled the event; the booking went with it.
    EventCancelled {
        booking_id: String,
        event: EventInfo,
        seats: u32,
        email: String,
    },
    Welcome {
        user_id: String,
        name: String,
        email: String,
    },
}

/// Makes the link of a guest booking's page for its confirmation mail: the same link, with the
/// same token, as the booking's answer carried.
#[derive(Debug, Clone)]
pub struct BookingLinks {
    signer: Option<LinkSigner>,
    public_url: String,
}

impl BookingLinks {
    pub fn new(signer: LinkSigner, public_url: String) -> Self {
        Self {
            signer: Some(signer),
            public_url,
        }
    }

    /// Mails without links (tests, and tools that never mail guests).
    pub fn none() -> Self {
        Self {
            signer: None,
            public_url: String::new(),
        }
    }

    fn guest_booking(&self, booking_id: &str) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let token = signer.sign(links::GUEST_BOOKING, booking_id);
        Some(links::guest_booking_link(
            &self.public_url,
            booking_id,
            &token,
        ))
    }
}

/// What the notifications service knows of an event, from its `eventCreated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    pub name: String,
    pub starts: DateTime<Utc>,
}

impl EventInfo {
    /// An event as the stores keep it: its start in Unix seconds.
    pub fn stored(name: String, start: i64) -> Self {
        let starts = DateTime::from_timestamp(start, 0).unwrap_or_default();
        Self { name, starts }
    }
}

/// One e-mail, ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Unique per fact; also the Message-ID's local part and the `.eml` file's name.
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The W3C `traceparent` of the span that queued it (the apply of its fact), which its
    /// sending continues; `None` when no trace is exported.
    pub trace: Option<String>,
}

impl Mail {
    /// A mail asked for directly (the gRPC `SendEmail`): `content` as its text.
    pub fn direct(id: String, to: String, content: &str) -> Mail {
        Mail {
            id,
            to,
            subject: "A message from MyEvents".into(),
            text: content.to_owned(),
            html: format!("<pre>{}</pre>", escape(content)),
            trace: platform::telemetry::traceparent(),
        }
    }
}

impl Fact {
    /// The fact a `bookingCancelled` reports, by its reason.
    pub fn cancellation(
        booking_id: String,
        event: EventInfo,
        seats: u32,
        email: String,
        reason: contracts::CancelReason,
    ) -> Fact {
        match reason {
            contracts::CancelReason::Customer => Fact::BookingCancelled {
                booking_id,
                event,
                seats,
                email,
            },
            contracts::CancelReason::EventCancelled => Fact::EventCancelled {
                booking_id,
                event,
                seats,
                email,
            },
        }
    }

    /// The mail this fact is worth; none for a guest who gave no e-mail address.
    pub fn mail(&self, links: &BookingLinks) -> Option<Mail> {
        let mail = self.write(links);
        (!mail.to.is_empty()).then_some(mail)
    }

    fn write(&self, links: &BookingLinks) -> Mail {
        match self {
            Fact::Booked {
                booking_id,
                event,
                seats,
                email,
                guest,
            } => booking_mail(
                format!("booked-{booking_id}"),
                email,
                format!("Your tickets for {}", event.name),
                "Your booking is confirmed.",
                booking_id,
                event,
                *seats,
                guest.then(|| links.guest_booking(booking_id)).flatten(),
            ),
            Fact::BookingCancelled {
                booking_id,
                event,
                seats,
                email,
            } => booking_mail(
                format!("cancelled-{booking_id}"),
                email,
                format!("Booking cancelled: {}", event.name),
                "Your booking is cancelled, as you asked; the seats are released.",
                booking_id,
                event,
                *seats,
                None,
            ),
            Fact::EventCancelled {
                booking_id,
                event,
                seats,
                email,
            } => booking_mail(
                format!("cancelled-{booking_id}"),
                email,
                format!("Event cancelled: {}", event.name),
                "We are sorry: the organiser has cancelled this event, and your booking with it.",
                booking_id,
                event,
                *seats,
                None,
            ),
            Fact::Welcome {
                user_id,
                name,
                email,
            } => {
                let text = format!(
                    "Hello {name},\n\nwelcome to MyEvents. You can now book seats and find your \
                     bookings under My bookings.\n"
                );
                let html = format!(
                    "<p>Hello {},</p><p>welcome to MyEvents. You can now book seats and find \
                     your bookings under <em>My bookings</em>.</p>",
                    escape(name)
                );
                Mail {
                    id: format!("welcome-{user_id}"),
                    to: email.clone(),
                    subject: "Welcome to MyEvents".into(),
                    text,
                    html,
                    trace: None,
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)] // each is one line of the mail
fn booking_mail(
    id: String,
    to: &str,
    subject: String,
    lead: &str,
    booking_id: &str,
    event: &EventInfo,
    seats: u32,
    manage_link: Option<String>,
) -> Mail {
    let when = event.starts.format("%A %-d %B %Y, %H:%M UTC").to_string();
    let seat_word = if seats == 1 { "seat" } else { "seats" };
    let mut text = format!(
        "{lead}\n\nEvent:   {}\nDate:    {when}\nSeats:   {seats}\nBooking: {booking_id}\n",
        event.name
    );
    let mut html = format!(
        "<p>{}</p><table><tr><th align=\"left\">Event</th><td>{}</td></tr>\
         <tr><th align=\"left\">Date</th><td>{when}</td></tr>\
         <tr><th align=\"left\">Seats</th><td>{seats} {seat_word}</td></tr>\
         <tr><th align=\"left\">Booking</th><td>{}</td></tr></table>",
        escape(lead),
        escape(&event.name),
        escape(booking_id)
    );
    if let Some(link) = manage_link {
        text.push_str(&format!(
            "\nTo see or cancel this booking, open:\n{link}\nKeep this link to yourself: \
             whoever has it can cancel the booking.\n"
        ));
        html.push_str(&format!(
            "<p><a href=\"{0}\">See or cancel this booking</a>. Keep this link to yourself: \
             whoever has it can cancel the booking.</p>",
            escape(&link)
        ));
    }
    Mail {
        id,
        to: to.to_owned(),
        subject,
        text,
        html,
        trace: None,
    }
}

/// Text into HTML: names come from organisers and customers.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show() -> EventInfo {
        EventInfo {
            name: "Rock & <Roll>".into(),
            starts: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_booking_mail_names_the_event_date_seats_and_booking_in_text_and_html() {
        let mail = Fact::Booked {
            booking_id: "b1".into(),
            event: show(),
            seats: 2,
            email: "ann@example.com".into(),
            guest: false,
        }
        .mail(&BookingLinks::none())
        .unwrap();
        assert_eq!(mail.id, "booked-b1");
        assert_eq!(mail.to, "ann@example.com");
        assert_eq!(mail.subject, "Your tickets for Rock & <Roll>");
        for needle in [
            "Rock & <Roll>",
            "Sunday 17 March 2030, 17:46 UTC",
            "Seats:   2",
            "b1",
        ] {
            assert!(mail.text.contains(needle), "{needle} in {}", mail.text);
        }
        assert!(
            mail.html.contains("Rock &amp; &lt;Roll&gt;"),
            "{}",
            mail.html
        );
        assert!(mail.html.contains("2 seats"), "{}", mail.html);
        assert!(!mail.text.contains("/#/bookings/"), "{}", mail.text);
    }

    #[test]
    fn a_guests_confirmation_carries_the_link_that_manages_the_booking() {
        let signer = LinkSigner::new(b"0123456789abcdef", None);
        let links = BookingLinks::new(signer.clone(), "https://tickets.example/".into());
        let booked = |guest: bool, email: &str| Fact::Booked {
            booking_id: "b1".into(),
            event: show(),
            seats: 2,
            email: email.into(),
            guest,
        };
        let mail = booked(true, "ann@example.com").mail(&links).unwrap();
        let token = signer.sign(links::GUEST_BOOKING, "b1");
        let link = format!("https://tickets.example/#/bookings/b1?token={token}");
        assert!(mail.text.contains(&link), "{}", mail.text);
        assert!(mail.html.contains(&link), "{}", mail.html);
        let member = booked(false, "ann@example.com").mail(&links).unwrap();
        assert!(!member.text.contains(&token), "a member signs in instead");
        assert_eq!(booked(true, "").mail(&links), None, "no address, no mail");
    }

    #[test]
    fn each_fact_has_its_own_mail_id_and_the_same_fact_the_same_id() {
        let booked = |id: &str| Fact::Booked {
            booking_id: id.into(),
            event: show(),
            seats: 1,
            email: "a@example.com".into(),
            guest: true,
        };
        let cancelled = Fact::EventCancelled {
            booking_id: "b1".into(),
            event: show(),
            seats: 1,
            email: "a@example.com".into(),
        };
        let mail = |fact: &Fact| fact.mail(&BookingLinks::none()).unwrap();
        assert_eq!(mail(&booked("b1")).id, mail(&booked("b1")).id);
        assert_ne!(mail(&booked("b1")).id, mail(&booked("b2")).id);
        assert_ne!(mail(&booked("b1")).id, mail(&cancelled).id);
        assert!(mail(&cancelled).subject.starts_with("Event cancelled"));
    }
}
