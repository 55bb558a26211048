//! The one error type of the HTTP API. Clients see `{"error": "…", "RequestID": "…"}` with the
//! right status and nothing of the internals (the `RequestID` is added by
//! [`crate::request_id`]); what went wrong inside is logged in full, under that request ID.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// How long a client is asked to wait before trying again after a 503: storage that is
/// overloaded or reconnecting usually is back within a second or two, and a busy process has
/// answered thousands of requests by then.
const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 1;

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
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The client took longer than allowed to send its request body.
    #[error("the request body took too long to arrive")]
    RequestTimeout,
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
    /// The process is working on all the requests it takes on at once (`http.max_in_flight`),
    /// and this one could not wait for a slot: the client may try again in a moment (503).
    #[error("the service is busy; try again in a moment")]
    Overloaded,
    /// The request's work did not finish within `http.request_timeout_secs` (a database or
    /// broker silent behind a network fault): 503. The work goes on, so the client is told that
    /// it may take effect, and how a booking is retried safely.
    #[error(
        "the request did not finish in time and may still take effect; a booking retried with \
         the same Idempotency-Key is made once"
    )]
    NotFinishedInTime,
    /// Storage failed; its kind decides the status, its detail goes to the log only.
    #[error(transparent)]
    Store(#[from] StoreError),
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
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded
            | Self::NotFinishedInTime
            | Self::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            Self::Store(StoreError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(StoreError::Internal(_)) | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = Map::new();
        let retry_after = match &self {
            Self::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::Overloaded
            | Self::NotFinishedInTime
            | Self::Store(StoreError::Unavailable(_)) => Some(RETRY_AFTER_UNAVAILABLE_SECS),
            _ => None,
        };
        match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                body.insert("error".into(), json!("internal error"));
            }
            Self::Store(error) => {
                // The detail names the database and quotes it: for the log, never the client.
                match error {
                    StoreError::Internal(_) => tracing::error!(%error, "storage error"),
                    _ => tracing::warn!(%error, "storage error"),
                }
                body.insert("error".into(), json!(error.for_client()));
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
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if let Self::RequestTimeout = self {
            // The rest of the body may still be on its way: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// What went wrong in a store, by what the client can do about it. Every service's store trait
/// returns it, whatever the backend; each backend maps its driver's errors to these kinds. The
/// text is the detail for the log (it may quote the database), never for a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be used right now (unreachable, overloaded, shutting down, a transient
    /// conflict that outlasted its retries): the client may try again (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The write contradicts what is stored (a unique key taken): 409.
    #[error("storage conflict: {0}")]
    Conflict(String),
    /// A value the client sent that the store cannot hold: 422.
    #[error("storage refused a value: {0}")]
    Invalid(String),
    /// A bug or damaged data (a constraint the code should have kept, a stored value this
    /// program does not know): 500.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// What a client is told: the kind, never the detail.
    pub fn for_client(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "storage is unavailable right now; try again shortly",
            Self::Conflict(_) => "the request conflicts with what is stored",
            Self::Invalid(_) => "a value of the request cannot be stored",
            Self::Internal(_) => "internal error",
        }
    }
}

/// A value read back from storage that this program does not know (a status, a role): damaged
/// or written by something else. Never read as a default, which would turn a cancelled event
/// into an active one; the stores turn it into [`StoreError::Internal`].
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?} in storage")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.to_owned(),
        }
    }
}

impl From<UnknownValue> for StoreError {
    fn from(e: UnknownValue) -> Self {
        StoreError::Internal(e.to_string())
    }
}

/// Parses a stored value with `parse`, an unknown one being an error rather than a default.
pub fn stored<T>(
    what: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, UnknownValue> {
    parse(value).ok_or_else(|| UnknownValue::new(what, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Value, Option<HeaderValue>) {
        let response = error.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn store_errors_keep_their_kind_and_hide_their_detail() {
        let secret = "duplicate key value violates unique constraint \"users_email_key\"";
        for (error, status) in [
            (
                StoreError::Unavailable(secret.into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (StoreError::Conflict(secret.into()), StatusCode::CONFLICT),
            (
                StoreError::Invalid(secret.into()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                StoreError::Internal(secret.into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let unavailable = matches!(error, StoreError::Unavailable(_));
            let (got, body, retry) = body_of(ApiError::from(error)).await;
            assert_eq!(got, status);
            assert!(!body.to_string().contains("users_email_key"), "{body}");
            assert!(body["error"].is_string());
            assert_eq!(retry.is_some(), unavailable, "Retry-After only on 503");
        }
    }

    #[test]
    fn an_unknown_stored_value_is_an_internal_error() {
        let parse = |s: &str| (s == "active").then_some(());
        assert!(stored("status", "active", parse).is_ok());
        let error = StoreError::from(stored("status", "archived", parse).unwrap_err());
        assert!(matches!(error, StoreError::Internal(m) if m.contains("archived")));
    }
}
