//! `/health/live`, `/health/ready` and `/openapi.json`, which every process serves.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use bus::Bus;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::roles::Check;

/// What `/health/ready` asks, and the document `/openapi.json` answers.
#[derive(Clone)]
struct Readiness {
    /// Each role's database, then the broker (which a process that runs only the web UI has
    /// not).
    checks: Arc<[Check]>,
    document: Arc<serde_json::Value>,
}

/// The routes every process serves, with their OpenAPI description.
fn health_routes() -> OpenApiRouter<Readiness> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of a process serving these services' parts (`myevents openapi` prints
/// it for every service).
pub fn openapi_document(parts: Vec<utoipa::openapi::OpenApi>) -> utoipa::openapi::OpenApi {
    platform::openapi::document(std::iter::once(health_routes().into_openapi()).chain(parts))
}

/// `router` with `/health/live`, `/health/ready` (asking `checks`, then `bus`) and
/// `/openapi.json` (describing `openapi`).
pub(super) fn with_health(
    router: Router,
    openapi: &[utoipa::openapi::OpenApi],
    mut checks: Vec<Check>,
    bus: Option<Arc<dyn Bus>>,
) -> Router {
    let document = serde_json::to_value(openapi_document(openapi.to_vec()))
        .unwrap_or_else(|e| json!({"error": format!("the OpenAPI document failed: {e}")}));
    checks.extend(bus.map(|bus| Check::new("the broker", bus, |b| b.check())));
    let readiness = Readiness {
        checks: checks.into(),
        document: Arc::new(document),
    };
    router.merge(health_routes().split_for_parts().0.with_state(readiness))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", responses(
    (status = 200, description = "Alive", body = Live),
))]
async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Live {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// Whether this process's storage and broker are reachable.
#[derive(ToSchema)]
#[allow(dead_code)] // a shape for the OpenAPI document: `ready` writes it with json!
struct Ready {
    ready: bool,
    /// Why not, for a person (only when not ready).
    error: Option<String>,
    /// Each part that failed (only when not ready).
    reasons: Option<Vec<String>>,
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "OpenAPI 3.1", body = Object),
))]
async fn openapi_json(State(readiness): State<Readiness>) -> Json<serde_json::Value> {
    Json(readiness.document.as_ref().clone())
}

/// How long `/health/ready` waits for each database or broker to answer. Each check bounds its
/// own steps (3 s each, and a check may take two: the pool, then one direct connection that says
/// why not), so this only catches one that would wait on the network for good; it is longer than
/// two steps so that a database that refuses is reported with its reason.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this process's storage and broker are reachable.
#[utoipa::path(get, path = "/health/ready", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready, with the reasons", body = Ready),
))]
async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    // A database or broker cut off by the network does not refuse: it stays silent, and a check
    // would wait as long as TCP does. Silence past the deadline counts as down, so that the
    // replica turns not ready and its load balancer stops sending to it. The checks run at once:
    // the answer takes at most one deadline.
    let reasons: Vec<String> = join_all(readiness.checks.iter().map(|check| async move {
        match tokio::time::timeout(READY_CHECK_TIMEOUT, check.run()).await {
            Ok(result) => result.err(),
            Err(_) => Some(format!(
                "{} did not answer within {} s",
                check.what,
                READY_CHECK_TIMEOUT.as_secs()
            )),
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    if reasons.is_empty() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        let error = format!("not ready: {}", reasons.join("; "));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": error, "reasons": reasons})),
        )
    }
}
