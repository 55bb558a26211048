//! Users and the rules for registering them. No I/O here: [`rules`] decides, driving a
//! store's [`unit::UnitOfWork`], whose primitives each backend writes in its own dialect.

#[cfg(test)]
mod memory;
pub mod rules;
pub mod unit;

pub use platform::UserId;
use platform::{Email, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A user as the API shows it; the password hash is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    #[serde(rename = "ID")]
    #[schema(value_type = String)]
    pub id: UserId,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// An account as stored: the user and its Argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    pub password_hash: String,
}

pub const MIN_PASSWORD: usize = 8;
/// Argon2 takes any length, but hashing megabytes on request is a denial of service.
pub const MAX_PASSWORD: usize = 1024;

/// Sign-up as a client sends it (keys already lower-cased; the schema documents the
/// PascalCase form and what [`Registration::check`] requires).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(as = NewUser)]
pub struct Registration {
    #[schema(rename = "Email", value_type = String, format = Email, required = true)]
    pub email: Option<String>,
    /// At least 8 characters and at most 1024 bytes.
    #[schema(rename = "Password", value_type = String, required = true, min_length = 8)]
    pub password: Option<String>,
    /// At most 200 characters, not only spaces.
    #[schema(rename = "Name", value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
}

/// A checked registration: a valid e-mail, a long enough password, a name.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: String,
    pub name: String,
}

pub fn check_password(password: &str) -> Result<(), Invalid> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(Invalid(format!(
            "Password must have at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Invalid(format!(
            "Password must have at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

impl Registration {
    pub fn check(self) -> Result<NewUser, Invalid> {
        let email = Email::parse(self.email.as_deref().unwrap_or_default()).map_err(Invalid)?;
        let password = self.password.unwrap_or_default();
        check_password(&password)?;
        let name = self.name.unwrap_or_default().trim().to_owned();
        if name.is_empty() {
            return Err(Invalid("Name is required".into()));
        }
        if name.chars().count() > 200 {
            return Err(Invalid("Name must have at most 200 characters".into()));
        }
        Ok(NewUser {
            email,
            password,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(email: &str, password: &str, name: &str) -> Registration {
        Registration {
            email: Some(email.into()),
            password: Some(password.into()),
            name: Some(name.into()),
        }
    }

    #[test]
    fn a_good_registration_passes_normalised() {
        let user = reg(" Ann@Example.com", "correct horse", " Ann ")
            .check()
            .unwrap();
        assert_eq!(
            (user.email.as_str(), user.name.as_str()),
            ("ann@example.com", "Ann")
        );
    }

    #[test]
    fn bad_registrations_say_why() {
        assert!(
            reg("nope", "correct horse", "Ann")
                .check()
                .unwrap_err()
                .0
                .contains("e-mail")
        );
        assert!(
            reg("a@b.io", "short", "Ann")
                .check()
                .unwrap_err()
                .0
                .contains("Password")
        );
        assert!(
            reg("a@b.io", "correct horse", " ")
                .check()
                .unwrap_err()
                .0
                .contains("Name")
        );
        assert!(reg("a@b.io", &"x".repeat(2000), "Ann").check().is_err());
    }
}
