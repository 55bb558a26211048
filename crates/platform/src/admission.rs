//! Load shedding. A process works on at most `http.max_in_flight` requests at once; a request
//! that finds every slot taken waits for one in a queue of at most `http.max_waiting`, and is
//! answered 503 with `Retry-After` when the queue is full or its wait runs out.
//!
//! How long it may wait follows the "controlled delay" rule of Facebook's *Fail at Scale*: a
//! burst after a quiet moment may wait up to `http.max_wait_ms`, so that it is served rather
//! than refused; but once the queue has not been empty for that long, or a request was refused
//! within it, the load is more than the store can carry, and a newcomer waits only
//! [`STANDING_QUEUE_WAIT`] before it is refused — or, when others already wait, is refused
//! before any work is spent on it ([`Admission::refuses_at_once`]). So
//! under a sustained overload the queue stays short, the requests that are taken keep the
//! latency of a busy but not overloaded server, the others learn at once to come back later,
//! and memory does not grow with a queue. When the load drops the queue empties and the next
//! request is served at once.
//!
//! Health probes skip it: a busy replica is alive and ready, and a load balancer must not take
//! every replica out of service at once because all of them are busy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{IntCounterVec, register_int_counter_vec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Whether requests to `path` skip the admission: the health probes.
pub fn is_never_shed(path: &str) -> bool {
    path.starts_with("/health/")
}

/// How long a request may wait for a slot while the process is overloaded.
pub const STANDING_QUEUE_WAIT: Duration = Duration::from_millis(5);

static SHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_http_requests_shed_total",
        "Requests answered 503 because the process was busy, by reason: queue_full \
         (max_waiting were waiting), overloaded (refused before any work while others waited \
         under an overload) or waited (no slot within the wait allowed)",
        &["reason"]
    )
    .expect("metric names are static and valid")
});

/// How many requests a process takes on.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRules {
    pub max_in_flight: usize,
    pub max_waiting: usize,
    /// The longest wait for a slot, after a moment when none waited.
    pub max_wait: Duration,
}

/// Why a request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    QueueFull,
    Overloaded,
    Waited,
}

impl Shed {
    fn label(self) -> &'static str {
        match self {
            Shed::QueueFull => "queue_full",
            Shed::Overloaded => "overloaded",
            Shed::Waited => "waited",
        }
    }
}

/// The slots and the queue of one process, shared by every listener.
#[derive(Clone)]
pub struct Admission {
    rules: AdmissionRules,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    /// When the queue was last seen empty, in nanoseconds since `epoch`.
    last_empty: Arc<AtomicU64>,
    /// When a request was last refused, in nanoseconds since `epoch` (0: never).
    last_shed: Arc<AtomicU64>,
    /// Tokio's clock, which tests can pause and move on.
    epoch: tokio::time::Instant,
}

impl Admission {
    pub fn new(rules: AdmissionRules) -> Self {
        // Every series exists at zero from the start, so that `rate()` sees the first shed.
        for reason in [Shed::QueueFull, Shed::Overloaded, Shed::Waited] {
            SHED.with_label_values(&[reason.label()]);
        }
        Self {
            rules,
            slots: Arc::new(Semaphore::new(rules.max_in_flight)),
            waiting: Arc::default(),
            last_empty: Arc::default(),
            last_shed: Arc::default(),
            epoch: tokio::time::Instant::now(),
        }
    }

    /// A slot, held until the permit is dropped, or why there is none.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Shed> {
        if self.waiting.load(Ordering::Acquire) == 0
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            self.saw_empty_queue();
            return Ok(slot);
        }
        let Some(queued) = Queued::join(self) else {
            return Err(self.count(Shed::QueueFull));
        };
        let wait = if self.overloaded() {
            STANDING_QUEUE_WAIT
        } else {
            self.rules.max_wait
        };
        let slot = tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await;
        drop(queued);
        match slot {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; a timeout is the only way here.
            _ => Err(self.count(Shed::Waited)),
        }
    }

    /// Whether a request arriving now would be refused however it waited: no slot is free,
    /// and the queue is full, or requests wait and the process is overloaded (then a newcomer
    /// would only wait the short wait behind them). The server answers such a request before
    /// spending anything on it (`http::shed_early`): under a sustained overload the refusals
    /// are most requests, and their cost is taken from the requests that are served.
    pub fn refuses_at_once(&self) -> bool {
        if self.slots.available_permits() > 0 {
            return false;
        }
        let waiting = self.waiting.load(Ordering::Acquire);
        let shed = if waiting >= self.rules.max_waiting {
            Shed::QueueFull
        } else if waiting > 0 && self.overloaded() {
            Shed::Overloaded
        } else {
            return false;
        };
        self.count(shed);
        true
    }

    fn count(&self, shed: Shed) -> Shed {
        SHED.with_label_values(&[shed.label()]).inc();
        self.last_shed.store(self.now().max(1), Ordering::Release);
        shed
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn saw_empty_queue(&self) {
        self.last_empty.store(self.now(), Ordering::Release);
    }

    /// Whether the load is more than the slots carry: requests have been waiting without a
    /// moment's break for longer than `max_wait`, or one was refused within `max_wait` (while
    /// newcomers are refused the queue empties now and then, and the overload goes on).
    fn overloaded(&self) -> bool {
        let last_shed = self.last_shed.load(Ordering::Acquire);
        self.queue_standing()
            || (last_shed > 0
                && Duration::from_nanos(self.now().saturating_sub(last_shed))
                    <= self.rules.max_wait)
    }

    /// Whether requests have been waiting, without a moment's break, for longer than
    /// `max_wait`.
    fn queue_standing(&self) -> bool {
        let since = self
            .now()
            .saturating_sub(self.last_empty.load(Ordering::Acquire));
        Duration::from_nanos(since) > self.rules.max_wait
    }
}

/// A place in the queue, given back when dropped (also when the client hangs up while waiting).
struct Queued<'a>(&'a Admission);

impl<'a> Queued<'a> {
    fn join(admission: &'a Admission) -> Option<Self> {
        if admission.waiting.load(Ordering::Acquire) == 0 {
            // The queue is empty until now: a new burst, not a standing queue. Noted before
            // joining, so that nobody sees this waiter with an old "last empty".
            admission.saw_empty_queue();
        }
        let before = admission.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= admission.rules.max_waiting {
            admission.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(admission))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.saw_empty_queue();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_in_flight: usize, max_waiting: usize, max_wait_ms: u64) -> Admission {
        Admission::new(AdmissionRules {
            max_in_flight,
            max_waiting,
            max_wait: Duration::from_millis(max_wait_ms),
        })
    }

    /// A request waiting for a slot in a task of its own.
    fn waiter(
        admission: &Admission,
    ) -> tokio::task::JoinHandle<Result<OwnedSemaphorePermit, Shed>> {
        let admission = admission.clone();
        tokio::spawn(async move { admission.admit().await })
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_a_slot_and_gets_it_when_one_is_freed() {
        let admission = admission(1, 1, 100);
        let first = admission.admit().await.expect("a free slot");
        let waiter = waiter(&admission);
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_finds_the_queue_full_is_refused_at_once() {
        let admission = admission(1, 1, 100);
        let _first = admission.admit().await.expect("a free slot");
        let _waiter = waiter(&admission);
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert_eq!(admission.admit().await.err(), Some(Shed::QueueFull));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_may_wait_the_whole_wait_then_is_refused() {
        let admission = admission(1, 10, 100);
        let _first = admission.admit().await.expect("a free slot");
        let started = tokio::time::Instant::now();
        assert_eq!(admission.admit().await.err(), Some(Shed::Waited));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    /// A request arrives every millisecond for `ms` ms and waits for a slot: a standing queue
    /// while no slot is freed.
    fn arrivals_every_millisecond(admission: &Admission, ms: u64) -> tokio::task::JoinHandle<()> {
        let admission = admission.clone();
        tokio::spawn(async move {
            let mut waiters = tokio::task::JoinSet::new();
            for _ in 0..ms {
                let admission = admission.clone();
                waiters.spawn(async move { admission.admit().await.map(drop) });
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            waiters.join_all().await;
        })
    }

    /// Once the queue has not been empty for longer than `max_wait`, a newcomer waits only the
    /// short wait: the queue drains instead of adding its wait to every answer.
    #[tokio::test(start_paused = true)]
    async fn a_standing_queue_cuts_the_wait_short() {
        let admission = admission(1, 1000, 100);
        let _busy = admission.admit().await.expect("a free slot");
        let load = arrivals_every_millisecond(&admission, 300);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = tokio::time::Instant::now();
        assert_eq!(admission.admit().await.err(), Some(Shed::Waited));
        assert_eq!(started.elapsed(), STANDING_QUEUE_WAIT);
        load.abort();
    }

    /// When the load drops, the next request gets a slot at once, and once nothing has been
    /// refused for `max_wait` a burst may wait the whole wait again.
    #[tokio::test(start_paused = true)]
    async fn the_whole_wait_comes_back_once_the_load_drops() {
        let admission = admission(1, 1000, 100);
        let busy = admission.admit().await.expect("a free slot");
        arrivals_every_millisecond(&admission, 300).await.unwrap();
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
        drop(busy);
        let busy = admission
            .admit()
            .await
            .expect("a slot at once when the load drops");
        tokio::time::sleep(Duration::from_millis(101)).await;
        let started = tokio::time::Instant::now();
        assert_eq!(admission.admit().await.err(), Some(Shed::Waited));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        drop(busy);
    }

    /// While the process is overloaded, a request that would only queue behind others is
    /// refused before any work is spent on it; with a slot free, or once the load has
    /// dropped, none is.
    #[tokio::test(start_paused = true)]
    async fn an_overloaded_process_refuses_newcomers_at_once() {
        let admission = admission(1, 1000, 100);
        assert!(!admission.refuses_at_once(), "a slot is free");
        let busy = admission.admit().await.expect("a free slot");
        assert!(
            !admission.refuses_at_once(),
            "nobody waits: a burst may queue"
        );
        let load = arrivals_every_millisecond(&admission, 300);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!admission.refuses_at_once(), "a burst, not yet an overload");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            admission.refuses_at_once(),
            "the queue has stood for 150 ms"
        );
        load.await.unwrap();
        drop(busy);
        assert!(!admission.refuses_at_once(), "a slot is free again");
    }

    /// A client that hangs up while waiting gives its place back.
    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_hangs_up_leaves_the_queue() {
        let admission = admission(1, 1, 100);
        let _busy = admission.admit().await.expect("a free slot");
        let waiter = waiter(&admission);
        tokio::task::yield_now().await;
        assert_eq!(admission.waiting.load(Ordering::Acquire), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
    }
}
