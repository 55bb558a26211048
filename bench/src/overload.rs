//! `overload`: the flash sale at twice what the server sustains, as an open loop — requests
//! arrive at a fixed rate whatever the answers do, as a crowd does — over thousands of
//! connections. A closed loop cannot overload a server: its clients slow down with it. Here the
//! server must shed the excess (503 with `Retry-After`) to keep the requests it takes fast.
//!
//! 1. capacity: the closed-loop flash sale (`--clients`), what the server sustains;
//! 2. overload: `--rate` (twice the capacity by default) over `--connections` connections;
//! 3. recovery: half the capacity, right after;
//!
//! then the oversell check. Each connection sends on its own fixed schedule; a request's
//! latency counts from when it was due, so an answer that held its connection up also counts
//! against the requests that had to wait for it (no coordinated omission).

use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::StatusCode;

use crate::{
    Args, MakeRequest, Server, bookings_of, check_no_oversell, connect, load, percentile_ms,
    report, sale_event,
};

#[derive(Default)]
struct OpenTally {
    accepted_us: Vec<u32>,
    shed_us: Vec<u32>,
    /// Sheds without a `Retry-After` header: a client would not know when to come back.
    shed_without_retry_after: u64,
    seats: u64,
    other: u64,
    /// Requests that got no answer: the connection failed (then it is opened again).
    failed: u64,
}

impl OpenTally {
    fn add(&mut self, other: OpenTally) {
        self.accepted_us.extend(other.accepted_us);
        self.shed_us.extend(other.shed_us);
        self.shed_without_retry_after += other.shed_without_retry_after;
        self.seats += other.seats;
        self.other += other.other;
        self.failed += other.failed;
    }
}

/// Requests at `rate` per second for `seconds`, spread over `connections` connections, each on
/// its own schedule: connection `k` sends request `k + j * connections` when it is due.
async fn open_loop(
    addr: &str,
    rate: f64,
    seconds: u64,
    connections: usize,
    make: MakeRequest,
) -> anyhow::Result<OpenTally> {
    if !(rate.is_finite() && rate > 0.0) {
        anyhow::bail!("an open loop needs a rate above 0, not {rate}");
    }
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await.context("opening the connections")?);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(seconds);
    let mut workers = Vec::with_capacity(connections);
    for (k, mut sender) in senders.into_iter().enumerate() {
        let make = make.clone();
        let addr = addr.to_owned();
        workers.push(tokio::spawn(async move {
            let mut tally = OpenTally::default();
            let mut n = k;
            loop {
                let due = start + Duration::from_secs_f64(n as f64 / rate);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let (request, seats) = make(n);
                n += connections;
                let answer = match sender.ready().await {
                    Ok(()) => sender.send_request(request).await,
                    Err(error) => Err(error),
                };
                let Ok(response) = answer else {
                    tally.failed += 1;
                    match connect(&addr).await {
                        Ok(again) => sender = again,
                        Err(_) => break,
                    }
                    continue;
                };
                let status = response.status();
                let retry_after = response.headers().contains_key("retry-after");
                if response.into_body().collect().await.is_err() {
                    tally.failed += 1;
                    continue;
                }
                let waited = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
                match status {
                    StatusCode::CREATED => {
                        tally.accepted_us.push(waited);
                        tally.seats += seats;
                    }
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                        tally.shed_us.push(waited);
                        tally.shed_without_retry_after += u64::from(!retry_after);
                    }
                    _ => tally.other += 1,
                }
            }
            tally
        }));
    }
    let mut total = OpenTally::default();
    for worker in workers {
        total.add(worker.await?);
    }
    total.accepted_us.sort_unstable();
    total.shed_us.sort_unstable();
    Ok(total)
}

fn report_open(name: &str, offered: f64, seconds: u64, tally: &OpenTally) {
    let per_second = |n: usize| n as f64 / seconds as f64;
    println!(
        "{name:<12} offered {offered:>7.0}/s: accepted {:>7.0}/s (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), shed {:>7.0}/s (p50 {:.1} ms, p99 {:.1} ms; {} without Retry-After), other {}, no answer {}",
        per_second(tally.accepted_us.len()),
        percentile_ms(&tally.accepted_us, 0.50),
        percentile_ms(&tally.accepted_us, 0.99),
        percentile_ms(&tally.accepted_us, 1.0),
        per_second(tally.shed_us.len()),
        percentile_ms(&tally.shed_us, 0.50),
        percentile_ms(&tally.shed_us, 0.99),
        tally.shed_without_retry_after,
        tally.other,
        tally.failed,
    );
}

/// The resident memory of process `pid`, in MiB (`VmRSS` in `/proc`).
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Samples the server's resident memory every 100 ms until dropped; the highest seen.
struct PeakMemory {
    peak: std::sync::Arc<std::sync::Mutex<f64>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakMemory {
    fn watch(pid: u32) -> Self {
        let peak = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
        let sampler = tokio::spawn({
            let peak = peak.clone();
            async move {
                loop {
                    if let (Some(now), Ok(mut peak)) = (resident_mib(pid), peak.lock()) {
                        *peak = peak.max(now);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { peak, sampler }
    }

    fn peak(self) -> f64 {
        self.sampler.abort();
        *self.peak.lock().expect("not poisoned")
    }
}

pub async fn overload(server: &Server, args: &Args) -> anyhow::Result<()> {
    let addr = server.addr.as_str();
    let pid = server.child.id();
    let (event_id, token) = sale_event(addr).await?;
    let make = bookings_of(&event_id, args.connections);

    let (capacity, elapsed) = load(
        addr,
        args.clients,
        args.seconds,
        StatusCode::CREATED,
        make.clone(),
    )
    .await?;
    let sustained = report("capacity", &capacity, elapsed);
    let before = resident_mib(pid).unwrap_or(0.0);

    let rate = args.rate.unwrap_or(2.0 * sustained);
    let memory = PeakMemory::watch(pid);
    let started = Instant::now();
    let overloaded = open_loop(addr, rate, args.seconds, args.connections, make.clone()).await?;
    let took = started.elapsed();
    let peak = memory.peak();
    report_open(
        &format!("overload/{}c", args.connections),
        rate,
        args.seconds,
        &overloaded,
    );
    println!(
        "server memory: {before:.0} MiB after the closed loop, {peak:.0} MiB at most during the overload ({:.1} s for {} s of arrivals)",
        took.as_secs_f64(),
        args.seconds
    );

    let recovery_seconds = args.seconds.div_ceil(2).max(2);
    let recovered = open_loop(
        addr,
        sustained / 2.0,
        recovery_seconds,
        args.connections.min(256),
        make,
    )
    .await?;
    report_open("recovery", sustained / 2.0, recovery_seconds, &recovered);

    let confirmed = capacity.seats + overloaded.seats + recovered.seats;
    let refused = capacity.other
        + (overloaded.shed_us.len() + recovered.shed_us.len()) as u64
        + overloaded.other
        + recovered.other;
    check_no_oversell(addr, addr, &token, &[event_id], confirmed, refused).await
}
