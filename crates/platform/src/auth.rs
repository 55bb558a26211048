//! Bearer-token auth shared by every service. Tokens are HS256 JWTs signed with one secret that
//! every service is configured with, so the bookings and events services can check a user's
//! identity and role without asking the users service (they never read its tables).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    pub email: String,
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: i64,
    pub iat: i64,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Issues and checks tokens. Put into every router as an `Extension<Arc<Auth>>`.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl Auth {
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        crate::hs256::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl_secs.min(i64::MAX as u64) as i64,
        }
    }

    /// A token for this user and its expiry (Unix seconds).
    pub fn issue(&self, user_id: &str, email: &str, role: Role) -> anyhow::Result<(String, i64)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_owned(),
            email: email.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(self.ttl_secs),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the token has expired; sign in again".into())
                }
                _ => ApiError::Unauthorized("the token is not valid".into()),
            })
    }
}

/// The claims of a valid bearer token, if the request carries one; a token that is present but
/// invalid is refused rather than ignored.
async fn bearer(parts: &Parts) -> Result<Option<Claims>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
        })?;
    let auth = parts
        .extensions
        .get::<Arc<Auth>>()
        .ok_or_else(|| anyhow::anyhow!("Auth extension missing from the router"))?;
    auth.verify(token.trim()).map(Some)
}

/// Signed in, any role.
pub struct CurrentUser(pub Claims);

/// Signed in or not.
pub struct MaybeUser(pub Option<Claims>);

/// Signed in as an admin (organiser).
pub struct Admin(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        bearer(parts).await.map(MaybeUser)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        bearer(parts).await?.map(CurrentUser).ok_or_else(|| {
            ApiError::Unauthorized("sign in first (Authorization: Bearer <token>)".into())
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let CurrentUser(claims) = CurrentUser::from_request_parts(parts, state).await?;
        if claims.is_admin() {
            Ok(Admin(claims))
        } else {
            Err(ApiError::Forbidden(
                "only organisers (admins) may do this".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_a_foreign_one_is_refused() {
        let auth = Auth::new(b"secret-one", 60);
        let (token, exp) = auth.issue("u1", "a@b.c", Role::Admin).unwrap();
        let claims = auth.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.exp),
            ("u1", Role::Admin, exp)
        );
        let other = Auth::new(b"secret-two", 60);
        assert!(other.verify(&token).is_err());
        assert!(auth.verify("not.a.token").is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let auth = Auth::new(b"s", 0);
        let mut validation_free = Auth::new(b"s", 0);
        validation_free.validation.leeway = 0;
        let (token, _) = auth.issue("u", "e", Role::Customer).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(validation_free.verify(&token).is_err());
    }
}
