//! The events service's HTTP API (SPEC §3): the reference's routes and JSON shapes.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use platform::{Admin, ApiError, ApiJson};
use serde::Deserialize;

use crate::domain::{self, Event, EventInput, Invalid, Location, LocationInput, Sales};
use crate::store::{EventStore, Page};

type Store = Arc<dyn EventStore>;

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/events", get(list_events).post(create_event))
        .route("/events/{id}", get(event).delete(cancel_event))
        .route("/events/id/{id}", get(event))
        .route("/events/name/{name}", get(event_by_name))
        .route("/events/{id}/sales", get(sales))
        .route("/sales", get(all_sales))
        .route("/locations", get(locations).post(create_location))
        .route("/locations/{id}", get(location))
        .with_state(store)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<String>,
    after: Option<String>,
}

async fn list_events(
    State(store): State<Store>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = match params.limit.as_deref() {
        None | Some("") => None,
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!("limit must be a whole number, not {l:?}"))
        })?),
    };
    let page = Page {
        limit,
        after: params.after.filter(|a| !a.is_empty()),
    };
    Ok(Json(store.events(page).await?))
}

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
/// reference allowed, of a location given in full without an ID, created with it.
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
    store.create_event(event.clone(), is_new).await?;
    Ok((StatusCode::CREATED, Json(event)))
}

/// Cancels an event; it is kept, marked `cancelled`. Cancelling again answers the same.
async fn cancel_event(
    State(store): State<Store>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    store
        .cancel_event(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no event with ID {id:?}")))
}

async fn sales(
    State(store): State<Store>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<Sales>, ApiError> {
    if store.event(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no event with ID {id:?}")));
    }
    let sales = store.sales(&id).await?.unwrap_or(Sales {
        event_id: id,
        ..Sales::default()
    });
    Ok(Json(sales))
}

async fn all_sales(
    State(store): State<Store>,
    Admin(_): Admin,
) -> Result<Json<Vec<Sales>>, ApiError> {
    Ok(Json(store.all_sales().await?))
}

async fn locations(State(store): State<Store>) -> Result<Json<Vec<Location>>, ApiError> {
    Ok(Json(store.locations().await?))
}

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

async fn create_location(
    State(store): State<Store>,
    Admin(_): Admin,
    ApiJson(input): ApiJson<LocationInput>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    let location = domain::new_location(input, new_id())?;
    store.create_location(location.clone()).await?;
    Ok((StatusCode::CREATED, Json(location)))
}
