//! The one error type of the HTTP API. Clients see `{"error": "…"}` with the right status and
//! nothing of the internals; internal errors are logged in full.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A conflict, with extra fields for the body (the bookings 409 carries `Available`).
    #[error("{message}")]
    Conflict {
        message: String,
        extra: Map<String, Value>,
    },
    #[error("{0}")]
    Unprocessable(String),
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = Map::new();
        match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                body.insert("error".into(), json!("internal error"));
            }
            Self::Unavailable(reason) => {
                tracing::warn!(%reason, "service unavailable");
                body.insert("error".into(), json!(reason));
            }
            Self::Conflict { message, extra } => {
                body.insert("error".into(), json!(message));
                body.extend(extra.clone());
            }
            other => {
                body.insert("error".into(), json!(other.to_string()));
            }
        }
        let mut response = (status, Json(Value::Object(body))).into_response();
        if let Self::TooManyRequests {
            retry_after_secs, ..
        } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A store could not be used right now (unreachable, overloaded, failing); the client may try
/// again. Every service's store trait returns it, whatever the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}
