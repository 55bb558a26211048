//! The events service's HTTP API (SPEC §3): the reference's routes and JSON shapes.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use platform::openapi::ErrorBody;
use platform::telemetry::store_span;
use platform::{Admin, ApiError, ApiJson};
use serde::Deserialize;
use tracing::Instrument as _;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::{self, Event, EventInput, Invalid, Location, LocationInput, Sales};
use crate::store::{EventStore, Page};

type Store = Arc<dyn EventStore>;

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

/// Every route with its OpenAPI description: the router and the document come from this one
/// list, so neither can have a route the other lacks.
fn routes() -> OpenApiRouter<Store> {
    OpenApiRouter::new()
        .routes(routes!(list_events, create_event))
        .routes(routes!(event, cancel_event))
        .routes(routes!(event_by_id))
        .routes(routes!(event_by_name))
        .routes(routes!(sales))
        .routes(routes!(all_sales))
        .routes(routes!(locations, create_location))
        .routes(routes!(location))
}

pub fn router(store: Store) -> Router {
    routes().split_for_parts().0.with_state(store)
}

/// This service's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
    /// Only events created after the event with this ID.
    after: Option<String>,
}

/// `?limit=` is a whole number within int32, or empty: the reference's clients send
/// `?limit=&after=` (SPEC §3), which means "not given".
fn limit_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{
        AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
    };
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .minimum(Some(0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(0)),
            )
            .description(Some(
                "At most this many events (all of them when left out or empty).",
            ))
            .build(),
    )
}

/// All events, in creation order.
#[utoipa::path(get, path = "/events", params(ListParams), responses(
    (status = 200, description = "The events", body = Vec<Event>),
    (status = 400, description = "`limit` is not a whole number", body = ErrorBody),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn list_events(
    State(store): State<Store>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None | Some("") => None,
        // A non-negative int32, as the OpenAPI document says.
        Some(l) => match l.parse::<i32>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 0 to {}, not {l:?}",
                    i32::MAX
                )));
            }
        },
    };
    let page = Page {
        limit,
        after: params.after.filter(|a| !a.is_empty()),
    };
    Ok(Json(store.events(page).await?))
}

/// One event.
#[utoipa::path(get, path = "/events/{id}", params(("id" = String, Path, description = "The event's ID")),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 404, description = "No event with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn event(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    store
        .event(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event with ID {id:?}")))
}

/// One event: the reference's search route, the same as `GET /events/{id}`.
#[utoipa::path(get, path = "/events/id/{id}", params(("id" = String, Path, description = "The event's ID")),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 404, description = "No event with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn event_by_id(store: State<Store>, id: Path<String>) -> Result<Json<Event>, ApiError> {
    event(store, id).await
}

/// The first event with this name: the reference's search route.
#[utoipa::path(get, path = "/events/name/{name}", params(("name" = String, Path, description = "The event's name")),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 404, description = "No event with this name", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn event_by_name(
    State(store): State<Store>,
    Path(name): Path<String>,
) -> Result<Json<Event>, ApiError> {
    store
        .event_by_name(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event named {name:?}")))
}

/// Creates an event in a hall of an existing location (`Location: {"ID": …}`), or, as the
/// reference allowed, of a location given in full without an ID, created with it (organisers).
#[utoipa::path(post, path = "/events", request_body = EventInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "The stored event, with its new ID", body = Event, links(
            ("GetEvent" = (operation_id = "event", parameters(("id" = "$response.body#/ID")))),
            ("GetEventById" = (operation_id = "event_by_id", parameters(("id" = "$response.body#/ID")))),
            ("GetEventSales" = (operation_id = "sales", parameters(("id" = "$response.body#/ID")))),
            ("CancelEvent" = (operation_id = "cancel_event", parameters(("id" = "$response.body#/ID")))),
            ("GetEventLocation" = (operation_id = "location", parameters(("id" = "$response.body#/Location/ID")))),
        )),
        (status = 400, description = "The body is not a JSON object of this shape", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an organiser", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "Invalid values, or an unknown location or hall", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn create_event(
    State(store): State<Store>,
    Admin(_): Admin,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<(StatusCode, Json<Event>), ApiError> {
    let Some(location_input) = input.location.clone() else {
        return Err(ApiError::Unprocessable(
            "Location is required: {\"ID\": …} of an existing location, or a new location in full"
                .into(),
        ));
    };
    let (location, is_new) = match location_input.id.clone().filter(|id| !id.trim().is_empty()) {
        Some(id) => {
            let location = store
                .location(&id)
                .await?
                .ok_or_else(|| ApiError::Unprocessable(format!("no location with ID {id:?}")))?;
            (location, false)
        }
        None => (domain::new_location(location_input, new_id())?, true),
    };
    let event = domain::new_event(input, location, new_id())?;
    store
        .create_event(event.clone(), is_new)
        .instrument(store_span("create event"))
        .await?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Cancels an event; it is kept, marked `cancelled`. Cancelling again answers the same
/// (organisers).
#[utoipa::path(delete, path = "/events/{id}", params(("id" = String, Path, description = "The event's ID")),
    security(("bearer" = [])), responses(
        (status = 200, description = "The event, now cancelled", body = Event),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an organiser", body = ErrorBody),
        (status = 404, description = "No event with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn cancel_event(
    State(store): State<Store>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    store
        .cancel_event(&id)
        .instrument(store_span("cancel event"))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event with ID {id:?}")))
}

/// Seats sold, bookings and cancellations of one event (organisers).
#[utoipa::path(get, path = "/events/{id}/sales", params(("id" = String, Path, description = "The event's ID")),
    security(("bearer" = [])), responses(
        (status = 200, description = "The figures", body = Sales),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an organiser", body = ErrorBody),
        (status = 404, description = "No event with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn sales(
    State(store): State<Store>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Sales>, ApiError> {
    if store.event(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no event with ID {id:?}")));
    }
    let sales = store.sales(&id).await?.unwrap_or(Sales {
        event_id: id.into(),
        ..Sales::default()
    });
    Ok(Json(sales))
}

/// Sales figures of every event that has bookings (organisers).
#[utoipa::path(get, path = "/sales", security(("bearer" = [])), responses(
    (status = 200, description = "The figures", body = Vec<Sales>),
    (status = 401, description = "Not signed in", body = ErrorBody),
    (status = 403, description = "Not an organiser", body = ErrorBody),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn all_sales(
    State(store): State<Store>,
    Admin(_): Admin,
) -> Result<Json<Vec<Sales>>, ApiError> {
    Ok(Json(store.all_sales().await?))
}

/// All locations.
#[utoipa::path(get, path = "/locations", responses(
    (status = 200, description = "The locations", body = Vec<Location>),
    (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn locations(State(store): State<Store>) -> Result<Json<Vec<Location>>, ApiError> {
    Ok(Json(store.locations().await?))
}

/// One location.
#[utoipa::path(get, path = "/locations/{id}", params(("id" = String, Path, description = "The location's ID")),
    responses(
        (status = 200, description = "The location", body = Location),
        (status = 404, description = "No location with this ID", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn location(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<Json<Location>, ApiError> {
    store
        .location(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no location with ID {id:?}")))
}

/// Creates a location with its halls (organisers).
#[utoipa::path(post, path = "/locations", request_body = LocationInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "The stored location, with its new ID", body = Location, links(
            ("GetLocation" = (operation_id = "location", parameters(("id" = "$response.body#/ID")))),
        )),
        (status = 400, description = "The body is not a JSON object of this shape", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an organiser", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "Invalid values", body = ErrorBody),
        (status = 503, description = "Storage unavailable; try again", body = ErrorBody),
))]
async fn create_location(
    State(store): State<Store>,
    Admin(_): Admin,
    ApiJson(input): ApiJson<LocationInput>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    let location = domain::new_location(input, new_id())?;
    store
        .create_location(location.clone())
        .instrument(store_span("create location"))
        .await?;
    Ok((StatusCode::CREATED, Json(location)))
}
