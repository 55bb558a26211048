//! Request IDs. Every request gets one: the client's `X-Request-Id` when it is a sensible
//! token, a fresh UUIDv7 otherwise. It is sent back in the `X-Request-Id` header, every log
//! line written while serving the request carries it (a tracing span), and every error body
//! names it as `RequestID`, so a person reporting an error gives the operator the line to look
//! for — the error text itself says nothing of the internals.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use crate::telemetry;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longer IDs are replaced rather than trusted: they go into every log line of the request.
const MAX_LEN: usize = 128;
/// Error bodies are small JSON; anything larger is not one of ours and is replaced.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The client's ID if it is 1 to [`MAX_LEN`] visible ASCII characters (no spaces or controls,
/// which could forge log lines), otherwise a new one.
pub fn choose(given: Option<&HeaderValue>) -> String {
    given
        .map(HeaderValue::as_bytes)
        .filter(|id| (1..=MAX_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic))
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The outermost middleware: picks the ID, serves the request inside a span that carries it,
/// and puts it on the response and into an error body.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = choose(req.headers().get(&HEADER));
    // The route template, not the path, names the span: traces group by it like the metrics.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    telemetry::continue_trace(&span, req.headers());
    let response = next.run(req).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let mut response = if response.status().is_client_error() || response.status().is_server_error()
    {
        stamp(response, &id).instrument(span).await
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER.clone(), value);
    }
    response
}

/// Adds `RequestID` to an error body. A body that is not a JSON object (an error some layer
/// wrote as plain text) is replaced by `{"error": <the status's reason>}` first, so that every
/// error a client sees has the same shape.
async fn stamp(response: Response, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let object = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) if object.contains_key("error") => Some(object),
            _ => None,
        },
        Err(_) => None,
    };
    let mut object = object.unwrap_or_else(|| reason_only(parts.status));
    object.insert("RequestID".into(), json!(id));
    let bytes = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

fn reason_only(status: StatusCode) -> Map<String, Value> {
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    Map::from_iter([("error".to_owned(), json!(reason))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_id_is_kept_and_anything_else_replaced() {
        let keep = HeaderValue::from_static("trace-4bf92f3577b34da6");
        assert_eq!(choose(Some(&keep)), "trace-4bf92f3577b34da6");
        for bad in [
            HeaderValue::from_static(""),
            HeaderValue::from_static("has space"),
            HeaderValue::from_str(&"x".repeat(MAX_LEN + 1)).unwrap(),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ] {
            let chosen = choose(Some(&bad));
            assert!(
                uuid::Uuid::parse_str(&chosen).is_ok(),
                "{bad:?} gave {chosen}"
            );
        }
        assert!(uuid::Uuid::parse_str(&choose(None)).is_ok());
    }

    #[tokio::test]
    async fn an_error_body_gets_the_id_and_a_plain_text_one_becomes_json() {
        let json_error = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_LENGTH, "25")
            .body(Body::from(r#"{"error":"no such route"}"#))
            .unwrap();
        let text_error = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::from("Invalid URL: cannot parse"))
            .unwrap();
        for (response, message) in [(json_error, "no such route"), (text_error, "bad request")] {
            let stamped = stamp(response, "abc").await;
            assert!(stamped.headers().get(header::CONTENT_LENGTH).is_none());
            let bytes = axum::body::to_bytes(stamped.into_body(), 1024)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body, json!({"error": message, "RequestID": "abc"}));
        }
    }
}
