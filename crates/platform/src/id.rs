//! The identifiers of the domain, one type each, so that a booking's id cannot be handed where an
//! event's is wanted. Each is the string the API and the stores show (`#[serde(transparent)]`),
//! and reads as a `&str` wherever one is asked for.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new identifier, unique and increasing with time (a UUID v7).
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    )*};
}

ids! {
    /// An event's id.
    EventId,
    /// A location's id.
    LocationId,
    /// A booking's id.
    BookingId,
    /// A user's id.
    UserId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_string_on_the_wire() {
        let id = EventId::from("e1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"e1\"");
        assert_eq!(serde_json::from_str::<EventId>("\"e1\"").unwrap(), id);
        assert_eq!(id, "e1");
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(BookingId::generate(), BookingId::generate());
    }
}
