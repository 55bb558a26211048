//! What protects the server from its clients and its clients from other sites: security headers
//! on every response, a deadline for a request body, and a cap on open connections. The header
//! read timeout is set where the server is built (`http::serve`).

use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

/// The UI (`web/`, built by Vite) loads its script and stylesheet from files of its own origin
/// and has no inline script or style element (React sets styles through the DOM, which CSP
/// allows); its icon and small assets may be `data:` URLs. It calls the API on its own origin
/// only. No site may frame it (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Sent on the HTTPS listener only: a browser that saw it goes straight to HTTPS for a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the security headers to every response (the UI's files and the API's JSON alike) unless
/// a handler set its own.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // The API's URLs hold ids (and a guest's booking page its token): other sites learn
        // nothing of them.
        (header::REFERRER_POLICY, "no-referrer"),
        // For browsers that predate `frame-ancestors`.
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// HSTS, for the HTTPS listener's responses: over plain HTTP the header means nothing and a
/// browser ignores it.
pub async fn strict_transport_security(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
    );
    response
}

/// How a request body must arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    pub max_bytes: usize,
    /// For the whole body, not per chunk: a client that trickles a byte a second would
    /// otherwise hold a connection and a task for as long as it likes.
    pub timeout: Duration,
}

/// Reads the whole request body within its deadline before the handler runs: 408 (and the
/// connection closed) when it comes too slowly, 413 when it is too large. Bodies here are small
/// JSON documents that every handler reads whole anyway.
pub async fn read_body_in_time(
    State(rules): State<BodyRules>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, rules.max_bytes);
    let bytes = match tokio::time::timeout(rules.timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            return if error.into_inner().is::<LengthLimitError>() {
                ApiError::PayloadTooLarge.into_response()
            } else {
                ApiError::BadRequest("cannot read the request body".into()).into_response()
            };
        }
        Err(_) => {
            tracing::info!(
                timeout_secs = rules.timeout.as_secs(),
                "request body too slow; connection closed"
            );
            return ApiError::RequestTimeout.into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Open files kept for what is not a client's connection: database and broker connections,
/// data files, logs.
pub const FILES_KEPT_FOR_THE_PROCESS: u64 = 256;

/// How many client connections this process can hold open: `wanted`, or fewer when the
/// open-file limit is lower. Raises the limit's soft value to its hard one first (as Go's
/// runtime does), since many systems start processes at a soft 1024 that a server outgrows.
pub fn connections_allowed(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited"; a soft limit is then raised to what the process could use.
    let most = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|current| current < most) {
        let raised = rustix::process::Rlimit {
            current: Some(most),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let Some(files) = limit.current else {
        return wanted; // no limit
    };
    // A quarter of a small limit, so that a few connections are always possible.
    let room = files.saturating_sub(FILES_KEPT_FOR_THE_PROCESS.min(files / 4));
    let allowed = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(wanted)
        .max(1);
    if allowed < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = allowed,
            "http.max_connections lowered to what the open-file limit allows"
        );
    }
    allowed
}

/// An acceptor that serves at most a fixed number of connections at once, on every listener
/// that shares it. A connection beyond the cap is closed at once: it costs a file descriptor
/// and memory for as long as it stays open, and a flood of idle connections must not starve
/// the databases and brokers of descriptors.
#[derive(Clone)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
}

impl ConnectionCap {
    pub fn new(max_connections: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for ConnectionCap {
    type Stream = Capped<I>;
    type Service = S;
    type Future = Ready<io::Result<(Capped<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Capped {
                    stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                tracing::warn!("connection refused: http.max_connections are open");
                Err(io::Error::other("too many connections"))
            }
        })
    }
}

/// A connection that holds its place under the cap until it is dropped.
pub struct Capped<I> {
    stream: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Capped<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Capped<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
