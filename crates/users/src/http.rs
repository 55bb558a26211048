//! The users service's HTTP API: register, sign in, who am I.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::{ApiError, ApiJson, Auth, CurrentUser, Email, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{Invalid, Registration, User};
use crate::login_limit::LoginLimit;
use crate::password;
use crate::store::{Account, UserStore};

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn UserStore>,
    limit: Arc<LoginLimit>,
}

pub fn router(store: Arc<dyn UserStore>, max_failed_logins: u32, lockout: Duration) -> Router {
    Router::new()
        .route("/users", post(register))
        .route("/auth/login", post(login))
        .route("/users/me", get(me))
        .with_state(AppState {
            store,
            limit: Arc::new(LoginLimit::new(max_failed_logins, lockout)),
        })
}

async fn register(
    State(state): State<AppState>,
    ApiJson(registration): ApiJson<Registration>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let new = registration.check()?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email: new.email.into_string(),
        name: new.name,
        role: Role::Customer,
    };
    let password_hash = password::hash(new.password).await?;
    let account = Account {
        user: user.clone(),
        password_hash,
    };
    if state.store.create(account).await? {
        Ok((StatusCode::CREATED, Json(user)))
    } else {
        Err(ApiError::conflict(
            "an account with this e-mail address exists already",
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Credentials {
    email: Option<String>,
    password: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    Extension(auth): Extension<Arc<Auth>>,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Json<Value>, ApiError> {
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
    let key = email.as_str();
    if let Some(wait) = state.limit.locked(key, Instant::now()) {
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed sign-ins; try again in {wait} s"),
            retry_after_secs: wait,
        });
    }
    let account = state.store.by_email(key).await?;
    let stored = match &account {
        Some(a) => a.password_hash.clone(),
        None => password::dummy_hash().await,
    };
    let matches = password::verify(password, stored).await?;
    match account {
        Some(account) if matches => {
            state.limit.succeeded(key);
            let user = account.user;
            let (token, expires_at) = auth.issue(&user.id, &user.email, user.role)?;
            Ok(Json(json!({"Token": token, "ExpiresAt": expires_at})))
        }
        _ => {
            state.limit.failed(key, Instant::now());
            Err(wrong())
        }
    }
}

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
