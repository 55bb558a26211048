//! Bearer-token auth shared by every service. Tokens are HS256 JWTs signed with one secret that
//! every service is configured with, so the bookings and events services can check a user's
//! identity and role without asking the users service (they never read its tables).
//!
//! Tokens carry an issuer and an audience, and are refused unless both are the configured ones
//! (a token made for another system that happens to share the secret is no token here). The
//! header names the key in `kid`, derived from the secret, so that the secret can be rotated:
//! new tokens are signed with the current secret, and tokens of the previous one stay valid
//! until they expire.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The `iss` and `aud` of tokens unless configured otherwise.
pub const DEFAULT_ISSUER: &str = "myevents";
pub const DEFAULT_AUDIENCE: &str = "myevents";

/// The `kid` of tokens signed with `secret`: the first 8 hex digits of its SHA-256, so that no
/// one has to configure key ids, and every service derives the same one.
pub fn key_id(secret: &[u8]) -> String {
    Sha256::digest(secret)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A secret tokens may be signed with, and its id.
struct Key {
    id: String,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &[u8]) -> Key {
        Key {
            id: key_id(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// What a token carries besides the [`Claims`].
#[derive(Serialize)]
struct Issued<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    iss: &'a str,
    aud: &'a str,
}

/// Issues and checks tokens. Put into every router as an `Extension<Arc<Auth>>`.
pub struct Auth {
    encoding: EncodingKey,
    /// The current key first, then the previous one, if any.
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    validation: Validation,
    ttl_secs: i64,
}

impl Auth {
    /// Signs with `secret`, issuer and audience [`DEFAULT_ISSUER`] and [`DEFAULT_AUDIENCE`].
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        crate::hs256::install();
        let mut auth = Self {
            encoding: EncodingKey::from_secret(secret),
            keys: vec![Key::new(secret)],
            issuer: String::new(),
            audience: String::new(),
            validation: Validation::new(Algorithm::HS256),
            ttl_secs: ttl_secs.min(i64::MAX as u64) as i64,
        };
        auth.set_issuer_and_audience(DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        auth
    }

    /// Tokens say `issuer` and `audience`, and only those are accepted.
    pub fn with_issuer_and_audience(mut self, issuer: &str, audience: &str) -> Self {
        self.set_issuer_and_audience(issuer, audience);
        self
    }

    fn set_issuer_and_audience(&mut self, issuer: &str, audience: &str) {
        self.issuer = issuer.to_owned();
        self.audience = audience.to_owned();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        self.validation = validation;
    }

    /// Also accepts the tokens of `previous` (the secret before a rotation) until they expire.
    pub fn with_previous_secret(mut self, previous: &[u8]) -> Self {
        let key = Key::new(previous);
        if self.keys.iter().all(|k| k.id != key.id) {
            self.keys.truncate(1);
            self.keys.push(key);
        }
        self
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
        let issued = Issued {
            claims: &claims,
            iss: &self.issuer,
            aud: &self.audience,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.keys[0].id.clone());
        let token = jsonwebtoken::encode(&header, &issued, &self.encoding)?;
        Ok((token, claims.exp))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = || ApiError::Unauthorized("the token is not valid".into());
        // A token names its key; one that names none, or one not configured here, was not
        // signed by this system (or by a secret retired more than one rotation ago).
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = header
            .kid
            .and_then(|kid| self.keys.iter().find(|k| k.id == kid))
            .ok_or_else(invalid)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the token has expired; sign in again".into())
                }
                _ => invalid(),
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
    fn a_token_carries_its_issuer_audience_and_key_id() {
        let auth = Auth::new(b"secret-one", 60).with_issuer_and_audience("tickets", "shop");
        let (token, _) = auth.issue("u1", "a@b.c", Role::Customer).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(b"secret-one").as_str()));
        assert_eq!(key_id(b"secret-one").len(), 8);
        let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
            .unwrap()
            .claims;
        assert_eq!(
            (claims["iss"].as_str(), claims["aud"].as_str()),
            (Some("tickets"), Some("shop"))
        );
    }

    #[test]
    fn a_wrong_issuer_or_audience_is_refused() {
        let auth = Auth::new(b"secret-one", 60);
        for (iss, aud) in [
            ("someone-else", DEFAULT_AUDIENCE),
            (DEFAULT_ISSUER, "another-app"),
        ] {
            let foreign = Auth::new(b"secret-one", 60).with_issuer_and_audience(iss, aud);
            let (token, _) = foreign.issue("u1", "a@b.c", Role::Admin).unwrap();
            assert!(foreign.verify(&token).is_ok());
            assert!(auth.verify(&token).is_err(), "iss {iss}, aud {aud}");
        }
    }

    #[test]
    fn tokens_of_the_previous_secret_verify_until_it_is_retired() {
        let before = Auth::new(b"secret-one", 60);
        let (old_token, _) = before.issue("u1", "a@b.c", Role::Customer).unwrap();

        let rotated = Auth::new(b"secret-two", 60).with_previous_secret(b"secret-one");
        assert_eq!(rotated.verify(&old_token).unwrap().sub, "u1");
        let (new_token, _) = rotated.issue("u2", "b@b.c", Role::Customer).unwrap();
        let kid = jsonwebtoken::decode_header(&new_token).unwrap().kid;
        assert_eq!(
            kid,
            Some(key_id(b"secret-two")),
            "new tokens use the new secret"
        );
        assert!(before.verify(&new_token).is_err());

        let retired = Auth::new(b"secret-three", 60).with_previous_secret(b"secret-two");
        assert!(retired.verify(&old_token).is_err());
        assert!(retired.verify(&new_token).is_ok());
    }

    /// Signs `claims` with `secret` under a header of our own choosing.
    fn forged(header: &Header, secret: &[u8]) -> String {
        crate::hs256::install();
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": "u1", "email": "a@b.c", "role": "admin", "iat": now, "exp": now + 60,
            "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE,
        });
        jsonwebtoken::encode(header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn an_unknown_or_missing_key_id_is_refused() {
        let auth = Auth::new(b"secret-one", 60);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key_id(b"secret-one"));
        assert!(auth.verify(&forged(&header, b"secret-one")).is_ok());
        header.kid = Some("deadbeef".into());
        assert!(auth.verify(&forged(&header, b"secret-one")).is_err());
        header.kid = None;
        assert!(auth.verify(&forged(&header, b"secret-one")).is_err());
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
