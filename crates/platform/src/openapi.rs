//! The OpenAPI document at `/openapi.json`. Each service's routes are registered together with
//! their `#[utoipa::path]` descriptions (utoipa-axum's `routes!`), and the bodies they take and
//! answer derive `ToSchema`, so the document is made from the code that serves the API and
//! cannot drift from it. A process serves the union of the services it runs
//! ([`document`]); `myevents openapi` prints the union of all of them.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

/// The body of every error answer (SPEC §3). Some answers add fields of their own (a booking's
/// 409 adds `Available`).
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, for a person; never a database's or broker's own text.
    pub error: String,
    /// The request's ID, as in the server's log: quote it when reporting a problem.
    #[schema(rename = "RequestID")]
    pub request_id: String,
}

/// The name of the bearer scheme the operations refer to (`security(("bearer" = []))`).
pub const BEARER: &str = "bearer";

/// Adds the bearer scheme: a JWT from `POST /auth/login`, sent as `Authorization: Bearer …`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        http.description = Some("The Token of `POST /auth/login`.".into());
        components
            .security_schemes
            .insert(BEARER.into(), SecurityScheme::Http(http).into());
    }
}

/// The whole document: the services' parts merged under one title, with the Error schema and
/// the bearer scheme they refer to.
pub fn document(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("MyEvents")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Event ticketing: locations, events, bookings and users. Request bodies \
                     are documented with PascalCase keys; the server also accepts each key in \
                     lower case, and a JSON body without a Content-Type.",
                ))
                .build(),
        )
        .build();
    for part in parts {
        doc.merge(part);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    let mut error_schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut error_schemas);
    components.schemas.insert(
        <ErrorBody as ToSchema>::name().into_owned(),
        ErrorBody::schema(),
    );
    components.schemas.extend(error_schemas);
    BearerScheme.modify(&mut doc);
    every_route_may_be_busy(&mut doc);
    doc
}

/// Any route but the health probes may answer 503 when the process is too busy to take the
/// request on (`crate::admission`); the routes that use storage say so themselves.
fn every_route_may_be_busy(doc: &mut OpenApi) {
    let busy = || {
        ResponseBuilder::new()
            .description("Busy, or storage unavailable: try again after Retry-After seconds")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        if crate::admission::is_never_shed(path) {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .entry("503".into())
                .or_insert_with(|| busy().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_schema_and_the_bearer_scheme_are_always_there() {
        let doc = serde_json::to_value(document([])).unwrap();
        let error = &doc["components"]["schemas"]["Error"];
        assert_eq!(error["required"], serde_json::json!(["error", "RequestID"]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn every_route_but_the_health_probes_may_answer_busy() {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
        let route = || PathItem::new(HttpMethod::Get, OperationBuilder::new().build());
        let part = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path("/events", route())
                    .path("/health/ready", route()),
            )
            .build();
        let doc = serde_json::to_value(document([part])).unwrap();
        let busy = &doc["paths"]["/events"]["get"]["responses"]["503"];
        assert_eq!(
            busy["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        assert!(doc["paths"]["/health/ready"]["get"]["responses"]["503"].is_null());
    }
}
