//! The users service: accounts with Argon2id passwords, sign-in that issues JWTs, and admins
//! made from the command line or configuration, never by the public API. Emits `userCreated`.

pub mod conformance;
pub mod domain;
mod http;
pub mod password;
pub mod signin;
pub mod store;

use std::sync::Arc;

pub use http::{openapi, router};
#[cfg(feature = "dynamodb")]
pub use store::DynamoUserStore;
#[cfg(feature = "mongodb")]
pub use store::MongoUserStore;
pub use store::{Account, SqlUserStore, UserStore};

use domain::{Invalid, User};

/// Makes `email` an admin with `password`, creating the account if needed (`myevents admin
/// create`, or `auth.admin_email` on start).
pub async fn make_admin(
    store: &Arc<dyn UserStore>,
    email: &str,
    password: &str,
) -> anyhow::Result<User> {
    let email = platform::Email::parse(email).map_err(|e| anyhow::anyhow!(e))?;
    domain::check_password(password).map_err(|Invalid(e)| anyhow::anyhow!(e))?;
    let name = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or("admin")
        .to_owned();
    let account = Account {
        user: User {
            id: platform::UserId::generate(),
            email: email.into_string(),
            name,
            role: platform::Role::Admin,
        },
        password_hash: password::hash(password.to_owned()).await?,
    };
    Ok(store.set_admin(account).await?)
}
