//! The users service's HTTP API: register, sign in, who am I.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use platform::openapi::ErrorBody;
use platform::telemetry::store_span;
use platform::{ApiError, ApiJson, Auth, CurrentUser, Email, Role};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{Invalid, Registration, User, UserId};
use crate::password;
use crate::signin::{self, Keys, Limits};
use crate::store::{Account, UserStore};

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn UserStore>,
    limits: Limits,
    /// Proxies whose `X-Forwarded-For` is believed (see [`signin::client_address`]).
    trusted_proxies: Arc<[IpAddr]>,
}

/// Every route with its OpenAPI description: the router and the document come from this one
/// list, so neither can have a route the other lacks.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
}

/// The routes of the users service. The server must provide each request's peer address
/// (`into_make_service_with_connect_info::<SocketAddr>`): sign-in limits count by it.
pub fn router(store: Arc<dyn UserStore>, limits: Limits, trusted_proxies: Vec<IpAddr>) -> Router {
    routes().split_for_parts().0.with_state(AppState {
        store,
        limits,
        trusted_proxies: trusted_proxies.into(),
    })
}

/// This service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// Unix milliseconds: sign-in failures are counted in wall-clock time, which every replica
/// shares (an `Instant` means nothing to another process).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// Registers a customer account.
#[utoipa::path(post, path = "/users", request_body = Registration, responses(
    (status = 201, description = "The user", body = User, links(
        ("SignIn" = (operation_id = "login", request_body = json!({
            "Email": "$request.body#/Email", "Password": "$request.body#/Password"}))),
    )),
    (status = 400, description = "The body is not a JSON object of this shape", body = ErrorBody),
    (status = 409, description = "An account with this e-mail address exists already", body = ErrorBody),
    (status = 413, description = "The body is too large", body = ErrorBody),
    (status = 422, description = "Invalid values", body = ErrorBody),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn register(
    State(state): State<AppState>,
    ApiJson(registration): ApiJson<Registration>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let new = registration.check()?;
    let user = User {
        id: UserId::generate(),
        email: new.email.into_string(),
        name: new.name,
        role: Role::Customer,
    };
    let password_hash = password::hash(new.password).await?;
    let account = Account {
        user: user.clone(),
        password_hash,
    };
    let created = state
        .store
        .create(account)
        .instrument(store_span("create user"))
        .await?;
    if created {
        Ok((StatusCode::CREATED, Json(user)))
    } else {
        Err(ApiError::conflict(
            "an account with this e-mail address exists already",
        ))
    }
}

/// Sign-in as a client sends it (keys already lower-cased).
#[derive(Deserialize, Default, ToSchema)]
struct Credentials {
    #[schema(rename = "Email", value_type = String, required = true)]
    email: Option<String>,
    #[schema(rename = "Password", value_type = String, required = true)]
    password: Option<String>,
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
struct SignedIn {
    /// A JWT to send as `Authorization: Bearer <Token>`.
    token: String,
    /// When the token expires, Unix seconds.
    expires_at: i64,
}

/// Signs in.
#[utoipa::path(post, path = "/auth/login", request_body = Credentials, responses(
    (status = 200, description = "The token", body = SignedIn),
    (status = 400, description = "The body is not a JSON object of this shape", body = ErrorBody),
    (status = 401, description = "Wrong e-mail address or password", body = ErrorBody),
    (status = 413, description = "The body is too large", body = ErrorBody),
    (status = 422, description = "Email or Password missing", body = ErrorBody),
    (status = 429, description = "Too many failed sign-ins for this address", body = ErrorBody,
        headers(("Retry-After" = u64, description = "Seconds to wait"))),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn login(
    State(state): State<AppState>,
    Extension(auth): Extension<Arc<Auth>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Json<SignedIn>, ApiError> {
    let Some(Extension(ConnectInfo(peer))) = peer else {
        return Err(
            anyhow::anyhow!("the server gives no peer address to count sign-ins by").into(),
        );
    };
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let forwarded_for = (!forwarded_for.is_empty()).then_some(forwarded_for.as_str());
    let client = signin::client_address(peer.ip(), forwarded_for, &state.trusted_proxies);
    let (Some(email), Some(password)) = (credentials.email, credentials.password) else {
        return Err(ApiError::Unprocessable(
            "Email and Password are required".into(),
        ));
    };
    let wrong = || ApiError::Unauthorized("wrong e-mail address or password".into());
    let Ok(email) = Email::parse(&email) else {
        return Err(wrong());
    };
    if password.len() > crate::domain::MAX_PASSWORD {
        return Err(wrong());
    }
    let keys = Keys::new(email.as_str(), client);
    let store = &state.store;
    let (account_failures, address_failures) =
        tokio::try_join!(store.failures(&keys.account), store.failures(&keys.address))?;
    let wait = state.limits.wait(
        account_failures.as_ref(),
        address_failures.as_ref(),
        now_ms(),
    );
    if let Some(wait) = wait {
        let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed sign-ins; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    let account = store.by_email(email.as_str()).await?;
    let stored = match &account {
        Some(a) => a.password_hash.clone(),
        None => password::dummy_hash().await,
    };
    let matches = password::verify(password, stored).await?;
    match account {
        Some(account) if matches => {
            store.clear_failures(&keys.account).await?;
            let user = account.user;
            let (token, expires_at) = auth.issue(&user.id, &user.email, user.role)?;
            Ok(Json(SignedIn { token, expires_at }))
        }
        _ => {
            let now = now_ms();
            let expires = state.limits.expires(now);
            tokio::try_join!(
                store.add_failure(&keys.account, now, expires),
                store.add_failure(&keys.address, now, expires)
            )?;
            Err(wrong())
        }
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/users/me", security(("bearer" = [])), responses(
    (status = 200, description = "The user", body = User),
    (status = 401, description = "Not signed in", body = ErrorBody),
    (status = 404, description = "This account no longer exists", body = ErrorBody),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn me(
    State(state): State<AppState>,
    CurrentUser(claims): CurrentUser,
) -> Result<Json<User>, ApiError> {
    state
        .store
        .by_id(&claims.sub)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("this account no longer exists".into()))
}
