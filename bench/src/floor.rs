//! `myevents-floor`: the least a booking can cost on this machine, as a yardstick for the
//! flash sale (docs/BENCHMARKS.md, "The floor").
//!
//! It serves `POST /events/{id}/bookings` through the same HTTP stack as `myevents serve`
//! (axum and hyper, `platform::http`'s middleware, mimalloc) and parses the same JSON, but has
//! nothing behind the handler:
//! - `--journal PATH` absent: every booking is answered 201 at once, nothing is kept;
//! - `--journal PATH`: every booking is one JSON line appended to `PATH` by one writer thread,
//!   which takes every line queued meanwhile, writes them and calls `fdatasync` once, then
//!   answers them: a group commit with nothing else (no seats, no outbox, no events);
//! - `--preallocate-mib N` as well: the journal is first filled with N MiB of zeros and then
//!   written over in place, so that an `fdatasync` need not also record a new file size (as a
//!   SQLite WAL is, once it has grown to its checkpoint size).
//!
//! No real store can be cheaper than the second, so it bounds what the flash sale can reach.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use platform::{ApiError, ApiJson, Auth, Config};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "The flash sale's floor: the HTTP stack with no store, or a bare journal")]
struct Args {
    /// host:port to serve on.
    #[arg(long)]
    listen: String,
    /// Append each booking to this file, durably (group commit); without it, keep nothing.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Journal files (`PATH.0`, `PATH.1`, …), each with its own writer, taken in turn: their
    /// fsyncs overlap instead of queueing behind one another.
    #[arg(long, default_value_t = 1)]
    files: usize,
    /// Fill each journal file with this many MiB of zeros first, then write over them.
    #[arg(long, default_value_t = 0)]
    preallocate_mib: u64,
}

#[derive(Deserialize)]
struct BookInput {
    seats: u32,
    email: String,
}

/// A line to append and who waits for it to be on disk (or for the reason it is not).
type Append = (Vec<u8>, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
struct Journal {
    writers: Arc<Vec<mpsc::Sender<Append>>>,
    next: Arc<AtomicUsize>,
}

impl Journal {
    fn open(path: Option<PathBuf>, files: usize, preallocate_mib: u64) -> anyhow::Result<Self> {
        let mut writers = Vec::new();
        for n in 0..files.max(1) {
            let Some(path) = &path else { break };
            let path = if files > 1 {
                path.with_extension(format!("{n}"))
            } else {
                path.clone()
            };
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let zeros = vec![0u8; 1 << 20];
            for mib in 0..preallocate_mib {
                file.write_all_at(&zeros, mib << 20)?;
            }
            file.sync_all()?;
            let mut end = 0u64;
            let (tx, rx) = mpsc::channel::<Append>();
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut batch = vec![first];
                        batch.extend(rx.try_iter());
                        let lines: Vec<u8> = batch.iter().flat_map(|(l, _)| l.clone()).collect();
                        let written = file
                            .write_all_at(&lines, end)
                            .and_then(|()| file.sync_data())
                            .map_err(|e| e.to_string());
                        end += lines.len() as u64;
                        for (_, reply) in batch {
                            let _ = reply.send(written.clone());
                        }
                    }
                })?;
            writers.push(tx);
        }
        Ok(Self {
            writers: Arc::new(writers),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn append(&self, line: Vec<u8>) -> Result<(), ApiError> {
        if self.writers.is_empty() {
            return Ok(());
        }
        let tx = &self.writers[self.next.fetch_add(1, Ordering::Relaxed) % self.writers.len()];
        let stopped = || ApiError::Internal(anyhow::anyhow!("the journal stopped"));
        let (reply, written) = oneshot::channel();
        tx.send((line, reply)).map_err(|_| stopped())?;
        written
            .await
            .map_err(|_| stopped())?
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot append: {e}")))
    }
}

async fn book(
    State(journal): State<Journal>,
    Path(event_id): Path<String>,
    ApiJson(input): ApiJson<BookInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let booking = json!({
        "ID": uuid::Uuid::now_v7().to_string(),
        "EventID": event_id,
        "EventName": "Flash sale",
        "Seats": input.seats,
        "Date": chrono::Utc::now().timestamp(),
        "Status": "active",
        "UserID": "",
        "Email": input.email,
    });
    let mut line = serde_json::to_vec(&booking).map_err(anyhow::Error::from)?;
    line.push(b'\n');
    journal.append(line).await?;
    Ok((StatusCode::CREATED, Json(booking)))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::default();
    let routes = Router::new()
        .route("/events/{id}/bookings", post(book))
        .with_state(Journal::open(
            args.journal,
            args.files,
            args.preallocate_mib,
        )?)
        .route(
            "/health/ready",
            get(|| async { Json(json!({"ready": true})) }),
        );
    let auth = Arc::new(Auth::new(b"floor-benchmark-secret", 3600));
    let app = platform::http::finish(routes, &config, None, auth, TaskTracker::new())?;
    let listener = platform::http::bind("listen", &args.listen).await?;
    let tls_listener = platform::http::bind_tls(&config)?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        platform::http::shutdown_signal().await;
        on_signal.cancel();
    });
    platform::http::serve(app, &config, listener, tls_listener, stop).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}
