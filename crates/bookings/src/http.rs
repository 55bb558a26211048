//! The bookings service's HTTP API (SPEC §3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router, middleware};
use platform::links::{self, LinkSigner};
use platform::openapi::ErrorBody;
use platform::telemetry::store_span;
use platform::{ApiError, ApiJson, CurrentUser, MaybeUser};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use tracing::Instrument as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::domain::{
    self, Access, Availability, BookOutcome, Booking, BookingId, Customer, EventId, Idempotency,
    Invalid, NewBooking,
};
use crate::guest_limit::GuestLimit;
use crate::store::{BookingFilter, BookingStore};

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

/// What the bookings API needs besides its store.
pub struct Settings {
    pub max_seats_per_booking: u32,
    /// Signs and checks guest bookings' management tokens.
    pub links: LinkSigner,
    /// Where people reach the web UI (`https://tickets.example`), for a guest booking's link.
    pub public_url: String,
    /// Guest bookings per client address and hour; 0 for no limit.
    pub guest_bookings_per_hour: u32,
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn BookingStore>,
    max_seats: u32,
    links: LinkSigner,
    public_url: Arc<str>,
    guest_limit: Option<Arc<GuestLimit>>,
}

/// Every route with its OpenAPI description: the router and the document come from this one
/// list, so neither can have a route the other lacks.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(book).layer(middleware::from_fn(crate::metrics::count_outcome)))
        .routes(routes!(availability))
        .routes(routes!(list))
        .routes(routes!(show, cancel))
}

pub fn router(store: Arc<dyn BookingStore>, settings: Settings) -> Router {
    crate::metrics::register();
    routes().split_for_parts().0.with_state(AppState {
        store,
        max_seats: settings.max_seats_per_booking,
        links: settings.links,
        public_url: settings.public_url.trim_end_matches('/').into(),
        guest_limit: GuestLimit::new(settings.guest_bookings_per_hour).map(Arc::new),
    })
}

/// This service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// A booking as a client sends it (keys already lower-cased; the reference's UI sends
/// `{"seats": n}` alone).
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = NewBooking)]
struct BookInput {
    /// From 1 to MaxSeatsPerBooking (see the event's availability; 10 unless configured).
    #[schema(rename = "Seats", value_type = u32, required = true, minimum = 1)]
    seats: Option<i64>,
    /// A guest's e-mail address, for the confirmation mail; optional (the reference's UI sends
    /// none). Ignored when signed in.
    #[schema(rename = "Email", value_type = Option<String>, format = Email)]
    email: Option<String>,
}

/// The headers a booking reads (`idempotency_key` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // a shape for the OpenAPI document
struct BookHeaders {
    /// Any key of 1 to 255 visible ASCII characters, unique to this booking request: a retry
    /// with the same key answers what the first request was answered.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, min_length = 1, max_length = 255,
        pattern = r"^[!-~]([ -~]*[!-~])?$")]
    idempotency_key: Option<String>,
}

/// A booking refused for want of seats or because the event is cancelled.
#[derive(ToSchema)]
#[allow(dead_code)] // a shape for the OpenAPI document: `answer` builds it as an ApiError
struct BookingConflict {
    error: String,
    #[schema(rename = "RequestID")]
    request_id: String,
    /// Seats still free (0 when the event is cancelled).
    #[schema(rename = "Available")]
    available: u32,
}

/// A booking as the API answers it. A guest booking also carries its secret management token
/// and the link to its page in the web UI: the token is what reading or cancelling it takes.
#[derive(Serialize, ToSchema)]
#[schema(as = BookingAnswer)]
struct BookingAnswer {
    #[serde(flatten)]
    booking: Booking,
    /// A guest booking's management token (`?token=` on `GET`/`DELETE /bookings/{id}`).
    #[serde(rename = "Token", skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// A guest booking's page in the web UI, token included.
    #[serde(rename = "Link", skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// Seats left of an event, and how many one booking may take.
#[derive(Serialize, ToSchema)]
#[schema(as = EventAvailability)]
struct AvailabilityAnswer {
    #[serde(flatten)]
    availability: Availability,
    #[serde(rename = "MaxSeatsPerBooking")]
    max_seats_per_booking: u32,
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

/// Books seats: as the signed-in user, or as a guest (with an `Email` for the confirmation
/// mail, or none, as the reference's UI books). A guest booking's answer carries its `Token`
/// and `Link`. An `Idempotency-Key` header makes a retry answer what the first request was
/// answered, and book nothing more.
#[utoipa::path(post, path = "/events/{id}/bookings", request_body = BookInput,
    params(
        ("id" = String, Path, description = "The event's ID"),
        BookHeaders,
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 201, description = "The booking", body = BookingAnswer, links(
            ("GetBooking" = (operation_id = "show", parameters(("id" = "$response.body#/ID")))),
            ("CancelBooking" = (operation_id = "cancel", parameters(("id" = "$response.body#/ID")))),
        )),
        (status = 400, description = "The body is not a JSON object of this shape, or a malformed Idempotency-Key", body = ErrorBody),
        (status = 401, description = "The bearer token is not valid", body = ErrorBody),
        (status = 404, description = "No such event on sale", body = ErrorBody),
        (status = 409, description = "Not enough seats left, or the event is cancelled", body = BookingConflict),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "Seats out of range, an invalid e-mail address, or an Idempotency-Key used for another request", body = ErrorBody),
        (status = 429, description = "Too many guest bookings from this address (when the operator sets a limit)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn book(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(event_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<BookInput>,
) -> Result<Response, ApiError> {
    let seats = domain::seats(input.seats, state.max_seats)?;
    let customer = Customer::from_request(user.as_ref(), input.email.as_deref())?;
    let signed_in = !customer.is_guest();
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency {
        key: customer.scope_key(&key),
        fingerprint: NewBooking::fingerprint(&event_id, seats, &customer),
    });
    if let (Some(limit), Some(Extension(ConnectInfo(addr))), true) =
        (&state.guest_limit, peer, customer.is_guest())
        && let Err(wait) = limit.take(addr.ip(), Instant::now())
    {
        return Err(ApiError::TooManyRequests {
            message: "too many guest bookings from this address; sign in to book more".into(),
            retry_after_secs: wait,
        });
    }
    let result = state
        .store
        .book(NewBooking {
            id: BookingId::generate(),
            event_id: event_id.into(),
            seats,
            date: chrono::Utc::now().timestamp(),
            customer,
            idempotency,
        })
        .instrument(store_span("book"))
        .await?;
    if let (BookOutcome::Booked { booking }, false) = (&result.outcome, result.replayed) {
        crate::metrics::record_booking(booking);
    }
    let outcome = crate::metrics::Outcome::of(&result.outcome);
    let mut response =
        answer(&state, result.outcome, signed_in).unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(outcome);
    if result.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The answer to a booking request. What a customer holds of an event is told to a signed-in
/// customer only: a guest names an address anyone may type.
fn answer(state: &AppState, outcome: BookOutcome, signed_in: bool) -> Result<Response, ApiError> {
    let available = |n: u32| Map::from_iter([("Available".to_owned(), json!(n))]);
    match outcome {
        BookOutcome::Booked { booking } => {
            Ok((StatusCode::CREATED, Json(booking_answer(state, booking))).into_response())
        }
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
        BookOutcome::OverLimit { limit, held } => {
            let mut extra = Map::from_iter([("SeatsPerCustomer".to_owned(), json!(limit))]);
            let message = match (signed_in, held) {
                (true, held @ 1..) => {
                    extra.insert("Held".to_owned(), json!(held));
                    format!(
                        "at most {limit} seats per customer for this event, and you hold {held} already"
                    )
                }
                _ => format!("at most {limit} seats per customer for this event"),
            };
            Err(ApiError::Conflict { message, extra })
        }
        BookOutcome::CustomerRequired => Err(ApiError::Unprocessable(
            "this event limits seats per customer: sign in or give an e-mail address".into(),
        )),
        BookOutcome::KeyReused => Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used for a different booking request".into(),
        )),
    }
}

/// A booking as the API shows it; a guest booking with its token and link.
fn booking_answer(state: &AppState, booking: Booking) -> BookingAnswer {
    let (token, link) = if booking.user_id.is_none() {
        let token = state.links.sign(links::GUEST_BOOKING, &booking.id);
        let link = links::guest_booking_link(&state.public_url, &booking.id, &token);
        (Some(token), Some(link))
    } else {
        (None, None)
    };
    BookingAnswer {
        booking,
        token,
        link,
    }
}

/// Seats left of an event.
#[utoipa::path(get, path = "/events/{id}/availability",
    params(("id" = String, Path, description = "The event's ID")),
    responses(
        (status = 200, description = "The availability", body = AvailabilityAnswer),
        (status = 404, description = "No such event on sale", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn availability(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Json<AvailabilityAnswer>, ApiError> {
    let availability = state
        .store
        .availability(&event_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such event on sale".into()))?;
    Ok(Json(AvailabilityAnswer {
        availability,
        max_seats_per_booking: state.max_seats,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only this event's bookings (organisers; a customer's own are filtered too).
    event: Option<String>,
}

/// A signed-in customer's own bookings; an admin's view of all (or one event's).
#[utoipa::path(get, path = "/bookings", params(ListParams), security(("bearer" = [])), responses(
    (status = 200, description = "The bookings", body = Vec<Booking>),
    (status = 400, description = "Malformed query", body = ErrorBody),
    (status = 401, description = "Not signed in", body = ErrorBody),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Booking>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = BookingFilter {
        user_id: (!user.is_admin()).then(|| user.sub.as_str().into()),
        event_id: params.event.filter(|e| !e.is_empty()).map(EventId::from),
    };
    Ok(Json(state.store.bookings(filter).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenParams {
    /// A guest booking's management token, from its booking answer or confirmation mail.
    token: Option<String>,
}

async fn find_allowed(
    state: &AppState,
    id: &str,
    user: Option<&platform::Claims>,
    token: Option<&str>,
) -> Result<Booking, ApiError> {
    let booking = state
        .store
        .booking(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no booking with ID {id:?}")))?;
    let holds_token =
        token.is_some_and(|t| state.links.verify(links::GUEST_BOOKING, &booking.id, t));
    match domain::access(&booking, user, holds_token) {
        Access::Allowed => Ok(booking),
        Access::SignIn => Err(ApiError::Unauthorized("sign in to see this booking".into())),
        Access::NeedsToken if token.is_some() => Err(ApiError::Forbidden(
            "this token does not open this booking; use the link of its confirmation".into(),
        )),
        Access::NeedsToken => Err(ApiError::Forbidden(
            "a guest booking opens with its token (?token=…), from its confirmation".into(),
        )),
        Access::Forbidden => Err(ApiError::Forbidden("this booking is someone else's".into())),
    }
}

/// One booking: its owner's, an organiser's, or a guest booking for the holder of its token.
#[utoipa::path(get, path = "/bookings/{id}",
    params(("id" = String, Path, description = "The booking's ID"), TokenParams),
    security((), ("bearer" = [])), responses(
        (status = 200, description = "The booking", body = BookingAnswer),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "Sign in to see this booking, or the bearer token is not valid", body = ErrorBody),
        (status = 403, description = "Someone else's booking, or a guest booking without its token", body = ErrorBody),
        (status = 404, description = "No booking with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    params: Result<Query<TokenParams>, QueryRejection>,
) -> Result<Json<BookingAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let booking = find_allowed(&state, &id, user.as_ref(), params.token.as_deref()).await?;
    Ok(Json(booking_answer(&state, booking)))
}

/// Cancels a booking (its owner, the holder of a guest booking's token, or an admin);
/// cancelling one that is no longer active answers it as it is, and its seats are not returned
/// twice.
#[utoipa::path(delete, path = "/bookings/{id}",
    params(("id" = String, Path, description = "The booking's ID"), TokenParams),
    security((), ("bearer" = [])), responses(
        (status = 200, description = "The booking, now cancelled", body = BookingAnswer),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "Sign in to cancel this booking, or the bearer token is not valid", body = ErrorBody),
        (status = 403, description = "Someone else's booking, or a guest booking without its token", body = ErrorBody),
        (status = 404, description = "No booking with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn cancel(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(id): Path<String>,
    params: Result<Query<TokenParams>, QueryRejection>,
) -> Result<Json<BookingAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    find_allowed(&state, &id, user.as_ref(), params.token.as_deref()).await?;
    let booking = state
        .store
        .cancel(&id)
        .instrument(store_span("cancel booking"))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no booking with ID {id:?}")))?;
    Ok(Json(booking_answer(&state, booking)))
}
