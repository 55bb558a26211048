//! Serving the API: the middleware every route gets, HTTP and HTTPS listeners, and graceful
//! shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::services::ServeDir;

use tracing::Instrument;

use crate::admission::{self, Admission, AdmissionRules};
use crate::config::Config;
use crate::hardening::{self, BodyRules, ConnectionCap};
use crate::{ApiError, Auth, metrics, request_id};

/// Wraps the services' routes with what every request gets: JSON 404/405, the web UI at `/`,
/// load shedding and detached handlers, the body deadline, metrics, CORS, the body limit, the
/// auth extension, security headers and, outermost, the request ID (so that every error body
/// carries it).
pub fn finish(
    app: Router,
    config: &Config,
    web_dir: Option<PathBuf>,
    auth: Arc<Auth>,
    in_flight: TaskTracker,
) -> anyhow::Result<Router> {
    let app = match web_dir {
        // Files for GET and HEAD only, so that a POST to an unknown path is a JSON 404.
        Some(dir) => app.fallback_service(
            axum::routing::get_service(
                ServeDir::new(dir).not_found_service(axum::routing::any(no_route)),
            )
            .fallback(no_route),
        ),
        None => app.fallback(no_route),
    };
    let body_rules = BodyRules {
        max_bytes: config.http.body_limit_bytes,
        timeout: Duration::from_secs(config.http.body_timeout_secs),
    };
    let admission = Admission::new(AdmissionRules {
        max_in_flight: config.http.max_in_flight,
        max_waiting: config.http.max_waiting,
        max_wait: Duration::from_millis(config.http.max_wait_ms),
    });
    let handling = Handling {
        in_flight,
        admission: admission.clone(),
        deadline: Duration::from_secs(config.http.request_timeout_secs),
    };
    Ok(app
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(handling, admit_and_detach))
        .layer(middleware::from_fn_with_state(
            body_rules,
            hardening::read_body_in_time,
        ))
        .layer(middleware::from_fn(metrics::track))
        // Inside CORS, so that a browser on another origin can read a refusal (and preflights,
        // which the CORS layer answers itself, are never refused).
        .layer(middleware::from_fn_with_state(admission, shed_early))
        .layer(cors(&config.cors.allow_origins)?)
        .layer(Extension(auth))
        .layer(DefaultBodyLimit::max(config.http.body_limit_bytes))
        .layer(middleware::map_response(hardening::security_headers))
        .layer(middleware::from_fn(request_id::request_id)))
}

async fn no_route() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// How handlers run: in tasks that shutdown waits for, at most so many at once, answered within
/// a deadline.
#[derive(Clone)]
struct Handling {
    in_flight: TaskTracker,
    admission: Admission,
    deadline: Duration,
}

/// Refuses a request the admission would refuse anyway (see [`Admission::refuses_at_once`])
/// before the body is read and the rest of the middleware runs (all but CORS, the security
/// headers and the request ID): a refusal must cost as little as possible, since under an
/// overload most requests are refused. Counted in the request metrics like any answer.
async fn shed_early(State(admission): State<Admission>, req: Request, next: Next) -> Response {
    if admission::is_never_shed(req.uri().path()) || !admission.refuses_at_once() {
        return next.run(req).await;
    }
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    metrics::count(
        req.method().as_str(),
        route,
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        started,
    );
    ApiError::Overloaded.into_response()
}

/// Takes the request on if a slot is free or frees up soon enough, else answers 503 (see
/// [`crate::admission`]); health probes are always taken on. Runs after the body is read, so
/// that a client sending slowly holds no slot.
///
/// Runs the handler in a task of its own, holding the slot, so that a request received in full
/// is carried out even when its client hangs up (the reference UI reloads the page right after
/// posting a booking). The tracker lets shutdown wait for these tasks. The task keeps the
/// request's span, so its log lines carry the request ID.
///
/// A handler that has not answered by the deadline (its database or broker silent behind a
/// network fault) is answered 503 with `Retry-After` while its task goes on: cancelling it could
/// not take back a commit already sent, and the client's retry with the same
/// `Idempotency-Key` learns the outcome either way.
async fn admit_and_detach(State(handling): State<Handling>, req: Request, next: Next) -> Response {
    let probe = admission::is_never_shed(req.uri().path());
    let slot = if probe {
        None
    } else {
        match handling.admission.admit().await {
            Ok(slot) => Some(slot),
            Err(_) => return ApiError::Overloaded.into_response(),
        }
    };
    let handler = async move {
        let response = next.run(req).await;
        drop(slot);
        response
    };
    let task = handling.in_flight.spawn(handler.in_current_span());
    // Health probes answer in their own time: `/health/ready` bounds each check and names what
    // does not answer, which this deadline's answer would hide.
    let deadline = if probe {
        Duration::MAX
    } else {
        handling.deadline
    };
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            ApiError::Internal(anyhow::anyhow!("request handler failed: {error}")).into_response()
        }
        Err(_) => {
            tracing::warn!(
                deadline_secs = handling.deadline.as_secs(),
                "request not finished in time; its work goes on"
            );
            ApiError::NotFinishedInTime.into_response()
        }
    }
}

fn cors(origins: &[String]) -> anyhow::Result<CorsLayer> {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        let list = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o).with_context(|| format!("CORS origin {o:?} is not valid"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(list)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            request_id::HEADER.clone(),
        ])
        .expose_headers([request_id::HEADER.clone(), header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600)))
}

/// The HTTPS listener when a certificate and key are configured, bound to `tls.listen` (see
/// [`serve`]); bound apart so that the caller knows its address before serving.
pub fn bind_tls(config: &Config) -> anyhow::Result<Option<std::net::TcpListener>> {
    if config.tls.cert.is_none() || config.tls.key.is_none() {
        return Ok(None);
    }
    let addr: SocketAddr = config
        .tls
        .listen
        .parse()
        .with_context(|| format!("tls.listen {:?} is not host:port", config.tls.listen))?;
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on tls.listen {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

/// Serves `app` on `listener` (and on `tls_listener`, from [`bind_tls`], over HTTPS) until
/// `shutdown`, then lets in-flight requests finish for up to the configured grace period.
/// Handlers can read the client's address (`ConnectInfo<SocketAddr>`): sign-in limits count
/// by it.
pub async fn serve(
    app: Router,
    config: &Config,
    listener: tokio::net::TcpListener,
    tls_listener: Option<std::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let header_timeout = Duration::from_secs(config.http.header_timeout_secs);
    // One cap for both listeners: it guards the process's file descriptors.
    let cap = ConnectionCap::new(hardening::connections_allowed(config.http.max_connections));
    let handle = axum_server::Handle::new();
    let mut servers = tokio::task::JoinSet::new();

    if let (Some(tls_listener), Some(cert), Some(key)) =
        (tls_listener, &config.tls.cert, &config.tls.key)
    {
        crate::tls::install_crypto_provider();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| {
                format!(
                    "cannot load TLS certificate {} / key {}",
                    cert.display(),
                    key.display()
                )
            })?;
        let addr = tls_listener.local_addr()?;
        let cap = cap.clone();
        let mut server = axum_server::from_tcp_rustls(tls_listener, tls)
            .map(|tls| tls.acceptor(cap))
            .handle(handle.clone());
        configure(server.http_builder(), header_timeout);
        tracing::info!(%addr, "serving HTTPS");
        let app = app.clone().layer(middleware::map_response(
            hardening::strict_transport_security,
        ));
        servers.spawn(async move {
            server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .context("HTTPS server failed")
        });
    }

    let addr = listener.local_addr()?;
    let mut server = axum_server::from_tcp(listener.into_std()?)
        .acceptor(cap)
        .handle(handle.clone());
    configure(server.http_builder(), header_timeout);
    tracing::info!(%addr, "serving HTTP");
    servers.spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .context("HTTP server failed")
    });

    tokio::spawn(async move {
        shutdown.cancelled().await;
        // Stops accepting, lets open requests finish, and cuts what is still open after `grace`.
        handle.graceful_shutdown(Some(grace));
    });
    while let Some(result) = servers.join_next().await {
        result.context("server task failed")??;
    }
    Ok(())
}

/// How every connection is served.
/// - A client that sends its whole request and hangs up (the reference UI reloads the page right
///   after posting a booking) still gets its request carried out: hyper would otherwise drop
///   the request when it reads the end of the stream.
/// - A client must send a request's line and headers within `header_timeout` of the server
///   starting to wait for them (which also ends idle keep-alive connections), so that one that
///   trickles bytes (slow loris) does not hold a connection for ever. hyper has no such timeout
///   without a timer.
/// - No `Server` header: hyper sends none, and nothing here adds one, so no version is shown.
fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_timeout: Duration,
) {
    builder
        .http1()
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
}

/// Binds an address given as `host:port`, naming it in the error.
pub async fn bind(what: &str, addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {what} {addr}"))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::{get, post};
    use tokio_util::task::TaskTracker;
    use tower::ServiceExt;

    use crate::{Auth, Config};

    /// A request not finished by `http.request_timeout_secs` is answered 503 with `Retry-After`
    /// and its work goes on to the end; a health probe has no such deadline.
    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_is_answered_503_while_its_work_goes_on() {
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let slow = move || async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.store(true, Ordering::SeqCst);
            "done"
        };
        let routes = Router::new().route("/slow", post(slow)).route(
            "/health/ready",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "ready"
            }),
        );
        let mut config = Config::default();
        config.http.request_timeout_secs = 1;
        let in_flight = TaskTracker::new();
        let auth = Arc::new(Auth::new(b"a-secret-of-sixteen-bytes", 60));
        let app = super::finish(routes, &config, None, auth, in_flight.clone()).unwrap();

        let request = Request::post("/slow").body(Body::empty()).unwrap();
        let answer = app.clone().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
        assert!(
            !done.load(Ordering::SeqCst),
            "answered before the work ended"
        );
        in_flight.close();
        in_flight.wait().await;
        assert!(done.load(Ordering::SeqCst), "the work went on");

        let probe = Request::get("/health/ready").body(Body::empty()).unwrap();
        assert_eq!(app.oneshot(probe).await.unwrap().status(), StatusCode::OK);
    }
}
