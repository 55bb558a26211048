//! The bookings service's HTTP API (SPEC §3).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use platform::{ApiError, ApiJson, CurrentUser, MaybeUser};
use serde::Deserialize;
use serde_json::{Map, json};

use crate::domain::{
    self, Access, BookOutcome, Booking, Customer, Idempotency, Invalid, NewBooking,
};
use crate::store::{BookingFilter, BookingStore};

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn BookingStore>,
    max_seats: u32,
}

pub fn router(store: Arc<dyn BookingStore>, max_seats_per_booking: u32) -> Router {
    Router::new()
        .route("/events/{id}/bookings", post(book))
        .route("/events/{id}/availability", get(availability))
        .route("/bookings", get(list))
        .route("/bookings/{id}", get(show).delete(cancel))
        .with_state(AppState {
            store,
            max_seats: max_seats_per_booking,
        })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BookInput {
    seats: Option<i64>,
    email: Option<String>,
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.trim().len()) => Ok(Some(key.trim().to_owned())),
        _ => Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        )),
    }
}

async fn book(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(event_id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<BookInput>,
) -> Result<Response, ApiError> {
    let seats = domain::seats(input.seats, state.max_seats)?;
    let customer = Customer::from_request(user.as_ref(), input.email.as_deref())?;
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        key: customer.scope_key(&key),
        fingerprint: NewBooking::fingerprint(&event_id, seats, &customer),
    });
    let result = state
        .store
        .book(NewBooking {
            id: uuid::Uuid::now_v7().to_string(),
            event_id,
            seats,
            date: chrono::Utc::now().timestamp(),
            customer,
            idempotency,
        })
        .await?;
    if let (BookOutcome::Booked { booking }, false) = (&result.outcome, result.replayed) {
        crate::metrics::record_booking(booking);
    }
    let mut response = answer(result.outcome)?;
    if result.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn answer(outcome: BookOutcome) -> Result<Response, ApiError> {
    let available = |n: u32| Map::from_iter([("Available".to_owned(), json!(n))]);
    match outcome {
        BookOutcome::Booked { booking } => Ok((StatusCode::CREATED, Json(booking)).into_response()),
        BookOutcome::NotEnoughSeats { available: n } => Err(ApiError::Conflict {
            message: match n {
                0 => "sold out".to_owned(),
                1 => "not enough seats left: only 1 is available".to_owned(),
                n => format!("not enough seats left: only {n} are available"),
            },
            extra: available(n),
        }),
        BookOutcome::EventCancelled => Err(ApiError::Conflict {
            message: "the event is cancelled".into(),
            extra: available(0),
        }),
        BookOutcome::UnknownEvent => Err(ApiError::NotFound("no such event on sale".into())),
        BookOutcome::KeyReused => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used for a different booking request".into(),
        )),
    }
}

async fn availability(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    let availability = state
        .store
        .availability(&event_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such event on sale".into()))?;
    let mut body = serde_json::to_value(availability).map_err(anyhow::Error::from)?;
    body["MaxSeatsPerBooking"] = json!(state.max_seats);
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
struct ListParams {
    event: Option<String>,
}

/// A signed-in customer's own bookings; an admin's view of all (or one event's).
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Booking>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = BookingFilter {
        user_id: (!user.is_admin()).then(|| user.sub.clone()),
        event_id: params.event.filter(|e| !e.is_empty()),
    };
    Ok(Json(state.store.bookings(filter).await?))
}

#[derive(Deserialize)]
struct GuestParams {
    email: Option<String>,
}

async fn find_allowed(
    state: &AppState,
    id: &str,
    user: Option<&platform::Claims>,
    guest_email: Option<&str>,
    cancelling: bool,
) -> Result<Booking, ApiError> {
    let booking = state
        .store
        .booking(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no booking with ID {id:?}")))?;
    match domain::access(&booking, user, guest_email, cancelling) {
        Access::Allowed => Ok(booking),
        Access::SignIn => Err(ApiError::Unauthorized("sign in to see this booking".into())),
        Access::Forbidden if cancelling && booking.user_id.is_empty() => Err(ApiError::Forbidden(
            "to cancel a guest booking, give its e-mail address (?email=…)".into(),
        )),
        Access::Forbidden => Err(ApiError::Forbidden("this booking is someone else's".into())),
    }
}

async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
) -> Result<Json<Booking>, ApiError> {
    find_allowed(&state, &id, user.as_ref(), None, false)
        .await
        .map(Json)
}

/// Cancels a booking (owner or admin); cancelling one that is no longer active answers it as
/// it is, and its seats are not returned twice.
async fn cancel(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    params: Result<Query<GuestParams>, QueryRejection>,
) -> Result<Json<Booking>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    find_allowed(&state, &id, user.as_ref(), params.email.as_deref(), true).await?;
    state
        .store
        .cancel(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no booking with ID {id:?}")))
}
