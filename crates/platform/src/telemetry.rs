//! Logging and traces. Logs go to standard output, as text or JSON. Traces go over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, configured only by the standard OpenTelemetry variables
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER(_ARG)`), which the
//! SDK reads itself. Without an endpoint no OpenTelemetry layer is installed, so a span costs
//! what it cost before.

use anyhow::Context as _;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// Whether spans are exported: without it there is no trace to continue or to name in logs.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the exporter alive; [`Telemetry::shutdown`] sends the spans still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what the batch still holds, so the spans of the last requests are not lost.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: could not flush traces: {error}");
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filtering (default `info`), the log format, and
/// the OTLP exporter when an endpoint is set. Must run inside the Tokio runtime: the gRPC
/// client starts its connection task there.
pub fn init(json_logs: bool) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = if json_logs {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider = match std::env::var(ENDPOINT) {
        Ok(endpoint) if !endpoint.is_empty() => Some(provider(&endpoint)?),
        _ => None,
    };
    // One filter for logs and traces: `RUST_LOG` must leave MyEvents' own crates at `info` for
    // their spans to be exported. (A filter per layer lost spans here: with the Kafka client
    // running, most request spans never reached the exporter.)
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("myevents")));
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    // A second init (tests that run the server twice in one process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(fmt)
        .try_init();
    Ok(Telemetry { provider })
}

fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let protocol = std::env::var(PROTOCOL).unwrap_or_else(|_| "grpc".to_owned());
    // The builders read the endpoint from the environment themselves; the HTTP one appends
    // `/v1/traces` to it as the specification says.
    let exporter = match protocol.as_str() {
        "grpc" => SpanExporter::builder().with_tonic().build(),
        "http/protobuf" => {
            // reqwest may be built with rustls (other crates ask for it), which then needs a
            // process-wide crypto provider even for plain HTTP.
            crate::tls::install_crypto_provider();
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()
        }
        other => anyhow::bail!("{PROTOCOL}={other}: use grpc or http/protobuf"),
    }
    .with_context(|| format!("cannot export traces to {endpoint}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build())
}

/// Makes `span` (not yet entered) continue the trace of the caller's W3C `traceparent` header,
/// if any, and fills its `trace_id` and `span_id` fields, so that every log line written in it
/// names the trace to look up.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if EXPORTING.load(Ordering::Relaxed) {
        adopt(
            span,
            TraceContextPropagator::new().extract(&Headers(headers)),
        );
    }
}

/// Makes `span` (not yet entered) a child of the span a message's `traceparent` names.
pub fn continue_message(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent
        && EXPORTING.load(Ordering::Relaxed)
    {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        adopt(span, TraceContextPropagator::new().extract(&carrier));
    }
}

/// The W3C `traceparent` of the current span, for a message it causes; `None` when no span is
/// exported.
pub fn traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The W3C `traceparent` naming `span`; `None` when no span is exported.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    ids.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            ids.trace_id(),
            ids.span_id(),
            ids.trace_flags().to_u8()
        )
    })
}

/// The span of a store transaction, `operation` naming what it does ("book", "cancel
/// booking"): the events it commits to the outbox carry it as their parent, so the relay's
/// publish and every consumer's apply hang below it. Instrument the store call's future with it.
pub fn store_span(operation: &'static str) -> Span {
    tracing::info_span!(
        "store",
        otel.name = %format_args!("store {operation}"),
        db.operation.name = operation,
    )
}

/// A span of work on a message (`kind`: "producer" for the relay's publish, "consumer" for an
/// apply, "client" for a mail's sending), child of the span its `traceparent` names. Made only for a
/// message that carries a trace: its producer exported spans, and so does this process.
pub fn message_span(name: &str, kind: &'static str, message_id: &str, traceparent: &str) -> Span {
    let span = tracing::info_span!(
        "message",
        otel.name = name,
        otel.kind = kind,
        message_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    continue_message(&span, Some(traceparent));
    span
}

fn adopt(span: &Span, parent: opentelemetry::Context) {
    // Fails only when the span is disabled by the filter; it then has nothing to continue.
    let _ = span.set_parent(parent);
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::http::HeaderValue;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A JSON log line written inside a request span names the caller's trace and the span,
    /// and a message made there carries the span's `traceparent`.
    #[test]
    fn log_lines_and_messages_in_a_request_name_its_trace() {
        let provider = SdkTracerProvider::builder().build();
        let logs = Capture::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(move || writer.clone()),
            );
        EXPORTING.store(true, Ordering::Relaxed);
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let message = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            continue_trace(&span, &headers);
            let _entered = span.enter();
            tracing::info!("inside");
            traceparent()
        });
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            logs.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{logs}"
        );
        let message = message.expect("a traceparent");
        assert!(
            message.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && message.ends_with("-01"),
            "{message}"
        );
        assert!(!message.contains("00f067aa0ba902b7"), "{message}");
        assert!(
            logs.contains(&format!(r#""span_id":"{}""#, &message[36..52])),
            "{logs}"
        );
    }
}
