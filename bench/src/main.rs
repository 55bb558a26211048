//! Load generator for MyEvents. `myevents-bench` starts a release `myevents serve` on a fresh
//! data folder on disk, then runs:
//! - `health`: N connections hammering `GET /health/live` — the HTTP ceiling of this machine;
//! - `flash-sale`: N connections booking one event as fast as they can — durable bookings,
//!   each answered only after its group commit is on disk —, followed by the oversell check;
//! - `floor`: the flash sale's load against `myevents-floor`, the same HTTP stack with no store
//!   or with a bare durable journal behind it: what any booking costs at least;
//! - `propagation --broker URL`: the events service and the bookings service in two processes
//!   joined by that broker; how long from `POST /events` answered until the event is bookable
//!   in the other process (p50/p99, one event at a time), and how many events per second flow
//!   from one to the other when many are created at once;
//! - `overload`: the flash sale at twice the rate the server sustains, as an open loop over
//!   thousands of connections: what it accepts and sheds, how fast, and its memory
//!   (`src/overload.rs`);
//! - `scale-out`: the bookings service in 1 to `--replicas` processes, one hot event and a sale
//!   spread over `--events` events (`src/scale_out.rs`).
//!
//! Client and server share the machine, so the figures are what one box can do end to end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

mod overload;
mod scale_out;

#[derive(Parser, Debug)]
#[command(about = "MyEvents benchmarks: flash sale and the /health/live ceiling")]
struct Args {
    /// `flash-sale`, `health`, `all` (those two), `floor`, `propagation`, `overload` or
    /// `scale-out`.
    #[arg(default_value = "all")]
    scenario: String,
    /// Concurrent clients (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The `myevents` binary [default: next to this one].
    #[arg(long)]
    server: Option<PathBuf>,
    /// Where the server keeps its data [default: a fresh folder under ./target].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// `propagation`, `scale-out`: the broker between the processes (`embedded:PATH` by
    /// default, `amqp://…`, `kafka://…`, `sqs://…`).
    #[arg(long)]
    broker: Option<String>,
    /// `propagation`: events created one at a time for the latency figures; `scale-out`: the
    /// events the spread sale books [default: 300 and 1000].
    #[arg(long)]
    events: Option<usize>,
    /// `scale-out`: the most bookings replicas (each count from 1 up is measured).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// `propagation`: stop creating after this many events in the throughput part (moto's SQS
    /// slows down with every message it holds; see docs/BENCHMARKS.md).
    #[arg(long)]
    max_events: Option<usize>,
    /// `overload`: connections the open loop sends on.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// `overload`: requests per second offered [default: twice what the closed loop reached].
    #[arg(long)]
    rate: Option<f64>,
    /// `floor`: journal files written side by side (see `src/floor.rs`).
    #[arg(long, default_value_t = 1)]
    journal_files: usize,
}

const ADMIN_EMAIL: &str = "bench@example.com";
const ADMIN_PASSWORD: &str = "bench-password";
const CAPACITY: u64 = 100_000_000;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_server(binary: &Path, data_dir: &Path) -> anyhow::Result<Server> {
    start_server_with(binary, data_dir, &[]).await
}

async fn start_server_with(
    binary: &Path,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(binary)
        .arg("serve")
        .envs(env.iter().copied())
        .env("MYEVENTS_LISTEN", &addr)
        // Any free port: several servers run side by side.
        .env("MYEVENTS_GRPC_LISTEN", "127.0.0.1:0")
        .env(
            "MYEVENTS_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("MYEVENTS_DATA_DIR", data_dir)
        .env("MYEVENTS_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("MYEVENTS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        // Quiet unless told otherwise (bench/traces.sh keeps MyEvents' spans at info).
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let server = Server { child, addr };
    wait_until_ready(&server.addr).await?;
    Ok(server)
}

async fn wait_until_ready(addr: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok((status, _)) = call(addr, Method::GET, "/health/ready", None, None).await
            && status == StatusCode::OK
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server at {addr} did not get ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(addr: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench");
    if let Some(t) = token {
        builder = builder.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            builder = builder.header("content-type", "application/json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    builder.body(body).expect("a valid request")
}

/// One request on a new connection, for setup and checks.
async fn call(
    addr: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut sender = connect(addr).await?;
    let response = sender
        .send_request(request(method, path, token, body.as_ref()))
        .await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[derive(Default)]
struct Tally {
    /// Share of the machine's CPU time that was busy during the run (client and server).
    busy_share: f64,
    latencies_us: Vec<u32>,
    ok: u64,
    seats: u64,
    other: u64,
}

/// Builds the `n`-th request and the seats it asks for.
type MakeRequest = Arc<dyn Fn(usize) -> (Request<Full<Bytes>>, u64) + Send + Sync>;

/// `clients` connections sending `make(i)` until `seconds` pass.
async fn load(
    addr: &str,
    clients: usize,
    seconds: u64,
    ok_status: StatusCode,
    make: MakeRequest,
) -> anyhow::Result<(Tally, Duration)> {
    load_on(&[addr.to_owned()], clients, seconds, ok_status, make).await
}

/// [`load`] with the connections spread over several servers: connection `i` to `addrs[i %
/// addrs.len()]`, as a load balancer would spread them.
async fn load_on(
    addrs: &[String],
    clients: usize,
    seconds: u64,
    ok_status: StatusCode,
    make: MakeRequest,
) -> anyhow::Result<(Tally, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..clients {
        let mut sender = connect(&addrs[i % addrs.len()]).await?;
        let stop = stop.clone();
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let (req, seats) = make(n);
                n += clients;
                let sent = Instant::now();
                let Ok(response) = sender.send_request(req).await else {
                    break;
                };
                let status = response.status();
                if response.into_body().collect().await.is_err() {
                    break;
                }
                tally
                    .latencies_us
                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if status == ok_status {
                    tally.ok += 1;
                    tally.seats += seats;
                } else {
                    tally.other += 1;
                }
            }
            tally
        }));
    }
    let started = Instant::now();
    let cpu_before = machine_cpu_ticks();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu_after = machine_cpu_ticks();
    let mut total = Tally::default();
    for w in workers {
        let t = w.await?;
        total.latencies_us.extend(t.latencies_us);
        total.ok += t.ok;
        total.seats += t.seats;
        total.other += t.other;
    }
    let elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    if let (Some((busy0, all0)), Some((busy1, all1))) = (cpu_before, cpu_after) {
        total.busy_share = (busy1 - busy0) as f64 / (all1 - all0).max(1) as f64;
    }
    Ok((total, elapsed))
}

/// Busy and total CPU time of the whole machine so far, in clock ticks (`/proc/stat`), so that a
/// run can say how much CPU each answer cost — a steadier figure than throughput on a shared box.
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total - idle, total))
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let index = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[index]) / 1000.0
}

fn report(name: &str, tally: &Tally, elapsed: Duration) -> f64 {
    let rate = tally.ok as f64 / elapsed.as_secs_f64();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let cpu_us = tally.busy_share * cores * 1e6 / rate.max(1.0);
    println!(
        "{name:<12} {rate:>10.0} ok/s   p50 {:>6.2} ms   p99 {:>6.2} ms   machine {:>3.0}% busy, {cpu_us:.0} µs CPU per answer   ({} ok, {} other, {:.1} s)",
        percentile_ms(&tally.latencies_us, 0.50),
        percentile_ms(&tally.latencies_us, 0.99),
        tally.busy_share * 100.0,
        tally.ok,
        tally.other,
        elapsed.as_secs_f64()
    );
    rate
}

async fn health(addr: &str, args: &Args) -> anyhow::Result<f64> {
    let make = Arc::new(|_| (request(Method::GET, "/health/live", None, None), 0));
    let (tally, elapsed) = load(addr, args.clients, args.seconds, StatusCode::OK, make).await?;
    Ok(report("health/live", &tally, elapsed))
}

async fn admin_token(addr: &str) -> anyhow::Result<String> {
    let (_, login) = call(
        addr,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"Email": ADMIN_EMAIL, "Password": ADMIN_PASSWORD})),
    )
    .await?;
    Ok(login["Token"]
        .as_str()
        .context("admin sign-in failed")?
        .to_owned())
}

/// Guest bookings of 1–4 seats of `event_id`.
fn bookings_of(event_id: &str, clients: usize) -> MakeRequest {
    bookings_across(&[event_id.to_owned()], clients)
}

/// Guest bookings of 1–4 seats, request `n` on event `n % events.len()`. Bodies are made once,
/// so that the client spends its share of the CPU on sending, not on formatting JSON; the
/// server still parses every one.
fn bookings_across(events: &[String], clients: usize) -> MakeRequest {
    let paths: Vec<String> = events
        .iter()
        .map(|event| format!("/events/{event}/bookings"))
        .collect();
    let bodies: Vec<Bytes> = (0..4 * clients)
        .map(|n| {
            let body = json!({"seats": 1 + n % 4, "email": format!("fan{}@example.com", n / 4)});
            Bytes::from(body.to_string())
        })
        .collect();
    Arc::new(move |n: usize| {
        let seats = 1 + (n % 4) as u64;
        let request = Request::builder()
            .method(Method::POST)
            .uri(&paths[n % paths.len()])
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(bodies[n % bodies.len()].clone()))
            .expect("a valid request");
        (request, seats)
    })
}

/// The flash sale's load against `myevents-floor` (see `src/floor.rs`): the same HTTP stack and
/// JSON with no store behind the handler, then with a bare durable journal, appended to and
/// then written over in place. No real store can do better than the journal.
async fn floor(binary: &Path, scratch: &Path, args: &Args) -> anyhow::Result<()> {
    let journal = scratch.join("floor-journal.log");
    let runs = [
        ("floor/none", None, 0),
        ("floor/journal", Some(&journal), 0),
        ("floor/in-place", Some(&journal), 512),
    ];
    for (name, journal, preallocate_mib) in runs {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut command = Command::new(binary);
        command.arg("--listen").arg(&addr).stdout(Stdio::null());
        if let Some(path) = journal {
            command.arg("--journal").arg(path);
            command.arg("--files").arg(args.journal_files.to_string());
            command
                .arg("--preallocate-mib")
                .arg(preallocate_mib.to_string());
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let server = Server { child, addr };
        wait_until_ready(&server.addr).await?;
        let cpu_before = ThreadCpu::of(server.child.id());
        let make = bookings_of("floor", args.clients);
        let (tally, elapsed) = load(
            &server.addr,
            args.clients,
            args.seconds,
            StatusCode::CREATED,
            make,
        )
        .await?;
        report(name, &tally, elapsed);
        ThreadCpu::report_since(cpu_before, server.child.id(), tally.ok);
    }
    Ok(())
}

/// The sale's event, with room for any number of bookings, once the bookings service knows
/// it; and the admin's token.
async fn sale_event(addr: &str) -> anyhow::Result<(String, String)> {
    let token = admin_token(addr).await?;
    let event_id = hot_event(addr, addr, &token).await?;
    Ok((event_id, token))
}

/// An event with room for any number of bookings, made by the events service at `events`,
/// once the bookings service at `bookings` knows it.
async fn hot_event(events: &str, bookings: &str, token: &str) -> anyhow::Result<String> {
    let (status, event) = call(
        events,
        Method::POST,
        "/events",
        Some(token),
        Some(json!({
            "Name": "Flash sale", "StartDate": 1_900_000_000, "EndDate": 1_900_003_600,
            "Location": {"Name": "Stadium", "Halls": [{"name": "Arena", "capacity": CAPACITY}]}
        })),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("cannot create the event: {status} {event}");
    }
    let event_id = event["ID"].as_str().context("event ID")?.to_owned();
    let availability = format!("/events/{event_id}/availability");
    while call(bookings, Method::GET, &availability, None, None)
        .await?
        .0
        != StatusCode::OK
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(event_id)
}

/// The oversell check: over `event_ids`, what clients were told (`confirmed` seats, `refused`
/// answers) is exactly what the inventory of the bookings service at `addr` holds and what the
/// events service at `events` counts as sold.
async fn check_no_oversell(
    addr: &str,
    events: &str,
    token: &str,
    event_ids: &[String],
    confirmed: u64,
    refused: u64,
) -> anyhow::Result<()> {
    let mut taken = 0;
    for event in event_ids {
        let availability = format!("/events/{event}/availability");
        let (_, now) = call(addr, Method::GET, &availability, None, None).await?;
        taken += CAPACITY - now["Available"].as_u64().context("Available")?;
    }
    // The events service counts sales from the bookings' events: it may lag a moment behind.
    let mut sold = 0;
    for _ in 0..600 {
        sold = 0;
        for event in event_ids {
            let sales = format!("/events/{event}/sales");
            let (_, figures) = call(events, Method::GET, &sales, Some(token), None).await?;
            sold += figures["SeatsSold"].as_u64().unwrap_or(0);
        }
        if sold == confirmed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "oversell check over {} event(s): seats confirmed to clients {confirmed} / taken in the inventory {taken} / sold per the events service {sold} / refused {refused} -> {}",
        event_ids.len(),
        if confirmed == taken && taken == sold {
            "OK"
        } else {
            "MISMATCH"
        }
    );
    if confirmed != taken || taken != sold {
        bail!("oversell check failed");
    }
    Ok(())
}

async fn flash_sale(server: &Server, data_dir: &Path, args: &Args) -> anyhow::Result<f64> {
    let addr = server.addr.as_str();
    let (event_id, token) = sale_event(addr).await?;

    let make = bookings_of(&event_id, args.clients);
    let cpu_before = ThreadCpu::of(server.child.id());
    let (tally, elapsed) =
        load(addr, args.clients, args.seconds, StatusCode::CREATED, make).await?;
    let sale_ended = Instant::now();
    let rate = report("flash-sale", &tally, elapsed);
    ThreadCpu::report_since(cpu_before, server.child.id(), tally.ok);

    let event_ids = [event_id];
    check_no_oversell(addr, addr, &token, &event_ids, tally.seats, tally.other).await?;
    mail_catch_up(&data_dir.join("mail"), tally.ok, sale_ended).await?;
    Ok(rate)
}

/// CPU time the server's threads used, summed by thread name (`db-bookings`, the tokio
/// workers, …), from `/proc`. Per booking, it says where the work goes, and it is steadier than
/// the rate on a machine whose speed varies from run to run. `None` where `/proc` is missing.
struct ThreadCpu(std::collections::BTreeMap<String, u64>);

impl ThreadCpu {
    fn of(pid: u32) -> Option<Self> {
        let mut ticks = std::collections::BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let dir = task.ok()?.path();
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("stat")),
            ) else {
                continue; // the thread ended meanwhile
            };
            // Fields after the parenthesised name: state is the 3rd field, utime the 14th and
            // stime the 15th of the whole line.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let used: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            *ticks.entry(name.trim().to_owned()).or_insert(0) += used;
        }
        Some(Self(ticks))
    }

    /// Prints what the threads of `pid` used since `before`, per booking of `bookings`.
    fn report_since(before: Option<ThreadCpu>, pid: u32, bookings: u64) {
        if let (Some(before), Some(after)) = (before, ThreadCpu::of(pid)) {
            println!(
                "server CPU per booking, by thread: {}",
                after.since(&before).per(bookings)
            );
        }
    }

    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu(
            self.0
                .iter()
                .map(|(name, &t)| {
                    (
                        name.clone(),
                        t.saturating_sub(*before.0.get(name).unwrap_or(&0)),
                    )
                })
                .collect(),
        )
    }

    /// "name N µs, …" for `answers` answers, busiest first; clock ticks are 10 ms.
    fn per(&self, answers: u64) -> String {
        let mut used: Vec<(&String, &u64)> = self.0.iter().filter(|(_, t)| **t > 0).collect();
        used.sort_by(|a, b| b.1.cmp(a.1));
        let total: u64 = used.iter().map(|(_, t)| **t).sum();
        let us = |ticks: u64| ticks as f64 * 10_000.0 / answers.max(1) as f64;
        let parts: Vec<String> = used
            .iter()
            .map(|(name, t)| format!("{name} {:.0} µs", us(**t)))
            .collect();
        format!("{} (all threads {:.0} µs)", parts.join(", "), us(total))
    }
}

/// How long after the sale the last confirmation mail was written, with the embedded mail
/// transport (one `booked-<booking id>.eml` per booking in `dir`). A booking's answer does not
/// wait for its mail, so mail falls behind during a peak and catches up after it; this shows by
/// how much.
async fn mail_catch_up(dir: &Path, bookings: u64, sale_ended: Instant) -> anyhow::Result<()> {
    if !dir.exists() {
        println!("mail: no mail folder (the notifications role is not running)");
        return Ok(());
    }
    let count = |dir: &Path| -> anyhow::Result<u64> {
        let mut n = 0;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("booked-") && name.ends_with(".eml") {
                n += 1;
            }
        }
        Ok(n)
    };
    let written_at_end = count(dir)?;
    let deadline = Duration::from_secs(600);
    loop {
        let written = count(dir)?;
        if written >= bookings {
            println!(
                "mail: {written_at_end} of {bookings} confirmations written when the sale ended, all {bookings} {:.1} s after it",
                sale_ended.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if sale_ended.elapsed() > deadline {
            bail!(
                "only {written} of {bookings} confirmation mails written {deadline:?} after the sale"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = match &args.server {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no folder")?
            .join("myevents"),
    };
    let scratch = tempfile::Builder::new().prefix("bench-data-").tempdir_in(
        args.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("target")),
    )?;
    println!(
        "{} clients, {} s per scenario, {} cores; server {}",
        args.clients,
        args.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        binary.display()
    );
    let mut ceiling = None;
    let mut sale = None;
    if matches!(args.scenario.as_str(), "health" | "all") {
        let server = start_server(&binary, &scratch.path().join("health")).await?;
        ceiling = Some(health(&server.addr, &args).await?);
    }
    if matches!(args.scenario.as_str(), "flash-sale" | "all") {
        let data_dir = scratch.path().join("sale");
        let server = start_server(&binary, &data_dir).await?;
        sale = Some(flash_sale(&server, &data_dir, &args).await?);
    }
    if args.scenario == "overload" {
        let server = start_server(&binary, &scratch.path().join("overload")).await?;
        return overload::overload(&server, &args).await;
    }
    if args.scenario == "scale-out" {
        return scale_out::scale_out(&binary, scratch.path(), &args).await;
    }
    if args.scenario == "propagation" {
        return propagation(&binary, scratch.path(), &args).await;
    }
    if args.scenario == "floor" {
        let floor_binary = std::env::current_exe()?
            .parent()
            .context("no folder")?
            .join("myevents-floor");
        return floor(&floor_binary, scratch.path(), &args).await;
    }
    if ceiling.is_none() && sale.is_none() {
        bail!(
            "unknown scenario {:?}: flash-sale, health, all, floor, propagation, overload or scale-out",
            args.scenario
        );
    }
    if let (Some(ceiling), Some(sale)) = (ceiling, sale) {
        println!(
            "durable bookings/s are {:.0}% of the /health/live ceiling",
            100.0 * sale / ceiling
        );
    }
    Ok(())
}

/// Creates one event in `location` and returns its id and when the answer came.
async fn create_event(
    sender: &mut SendRequest<Full<Bytes>>,
    token: &str,
    location: &str,
    n: usize,
) -> anyhow::Result<(String, Instant)> {
    let body = json!({
        "Name": format!("Propagation {n}"), "StartDate": 1_900_000_000, "EndDate": 1_900_003_600,
        "Location": {"ID": location}, "Hall": "Main"
    });
    // A connection takes a moment to be ready for the next request after an answer.
    sender.ready().await?;
    let response = sender
        .send_request(request(Method::POST, "/events", Some(token), Some(&body)))
        .await
        .context("POST /events")?;
    let answered = Instant::now();
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let event: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != StatusCode::CREATED {
        bail!("cannot create an event: {status} {event}");
    }
    Ok((
        event["ID"].as_str().context("event ID")?.to_owned(),
        answered,
    ))
}

async fn bookable(sender: &mut SendRequest<Full<Bytes>>, event: &str) -> anyhow::Result<bool> {
    let path = format!("/events/{event}/availability");
    sender.ready().await?;
    let response = sender
        .send_request(request(Method::GET, &path, None, None))
        .await
        .context("GET availability")?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status == StatusCode::OK)
}

/// `myevents serve` processes of a benchmark, each running some of the roles, joined by one
/// broker: `--broker`, or an embedded log in `scratch` that they share.
struct Processes {
    broker: String,
    namespace: String,
}

impl Processes {
    fn new(args: &Args, scratch: &Path) -> Self {
        let shared_log = scratch.join("bus.db");
        Self {
            broker: args
                .broker
                .clone()
                .unwrap_or_else(|| format!("embedded:{}", shared_log.display())),
            namespace: format!("bench-{}-", std::process::id()),
        }
    }

    /// A process running `roles` (`events,users`), with its data in `data_dir`.
    async fn start(&self, binary: &Path, data_dir: &Path, roles: &str) -> anyhow::Result<Server> {
        let env = [
            ("MYEVENTS_ROLES", roles),
            ("MYEVENTS_BROKER_URL", self.broker.as_str()),
            ("MYEVENTS_BROKER_NAMESPACE", self.namespace.as_str()),
            (
                "MYEVENTS_JWT_SECRET",
                "one-secret-for-every-benchmark-process",
            ),
        ];
        start_server_with(binary, data_dir, &env).await
    }
}

/// The events service (with users, for the admin's token) and the bookings service in two
/// processes, each with its own data folder, joined only by `--broker`.
async fn propagation(binary: &Path, scratch: &Path, args: &Args) -> anyhow::Result<()> {
    let processes = Processes::new(args, scratch);
    let front = processes
        .start(binary, &scratch.join("events"), "events,users")
        .await?;
    let back = processes
        .start(binary, &scratch.join("bookings"), "bookings")
        .await?;
    let broker = &processes.broker;
    println!("propagation over {broker}");
    let token = admin_token(&front.addr).await?;
    let (status, location) = call(
        &front.addr,
        Method::POST,
        "/locations",
        Some(&token),
        Some(json!({"Name": "Hall of fame", "Halls": [{"name": "Main", "capacity": 100}]})),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("cannot create the location: {status} {location}");
    }
    let location = location["ID"].as_str().context("location ID")?.to_owned();

    // Latency: one event at a time, the bookings process asked without pause until it knows it.
    // The first event also waits for the consumer to join its group (seconds on Kafka), so it
    // is reported on its own and left out of the percentiles.
    let mut writer = connect(&front.addr).await?;
    let mut reader = connect(&back.addr).await?;
    let events = args.events.unwrap_or(300);
    let mut latencies_us = Vec::with_capacity(events + 1);
    for n in 0..=events {
        let (event, answered) = create_event(&mut writer, &token, &location, n).await?;
        while !bookable(&mut reader, &event).await? {
            if answered.elapsed() > Duration::from_secs(30) {
                bail!("event {event} did not reach the bookings process within 30 s");
            }
        }
        latencies_us.push(answered.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    let first_ms = f64::from(latencies_us.remove(0)) / 1000.0;
    println!("first event (the consumer joining included): {first_ms:.1} ms");
    latencies_us.sort_unstable();
    println!(
        "propagation  POST /events answered -> bookable in the other process: p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   ({} events, one at a time)",
        percentile_ms(&latencies_us, 0.50),
        percentile_ms(&latencies_us, 0.99),
        percentile_ms(&latencies_us, 1.0),
        latencies_us.len()
    );

    // Throughput: `clients` connections create events for `seconds`; the clock stops when the
    // bookings process knows every one of them.
    let clients = args.clients.min(16);
    // Client c creates events c, c + clients, …: all below the limit, the limit in all.
    let limit = args.max_events.unwrap_or(usize::MAX);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut creators = Vec::new();
    for c in 0..clients {
        let mut sender = connect(&front.addr).await?;
        let (token, location, stop) = (token.clone(), location.clone(), stop.clone());
        creators.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = c;
            while !stop.load(Ordering::Relaxed) && n < limit {
                match create_event(&mut sender, &token, &location, 1_000_000 + n).await {
                    Ok((id, _)) => ids.push(id),
                    Err(_) => break,
                }
                n += clients;
            }
            ids
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created = Vec::new();
    for c in creators {
        created.extend(c.await?);
    }
    let committed = started.elapsed();
    for (n, event) in created.iter().enumerate() {
        while !bookable(&mut reader, event).await? {
            if started.elapsed() > Duration::from_secs(args.seconds + 120) {
                bail!(
                    "event {event} (number {} of the {} created, checked in order) did not reach the bookings process within {} s",
                    n + 1,
                    created.len(),
                    args.seconds + 120
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let applied = started.elapsed();
    println!(
        "throughput   {} events created in {:.1} s by {clients} clients, all bookable after {:.1} s: {:.0} events/s end to end",
        created.len(),
        committed.as_secs_f64(),
        applied.as_secs_f64(),
        created.len() as f64 / applied.as_secs_f64()
    );
    Ok(())
}
