//! One group-commit batcher for the stores that batch (SQLite's and PostgreSQL's bookings).
//!
//! Requests queue; a batch takes what is queued when its turn comes (after the batch before it
//! committed), up to [`MAX_BATCH`], and hands it to `work` at once: one transaction for the lot,
//! so a flash sale pays one commit (and one fsync) per batch, and its event's seats are read
//! once and written back once. The queue fills while the previous
//! batch commits, which is exactly when batching pays. If the batch fails, each of its requests
//! is carried out again alone, so one bad request fails by itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::Error;

/// Requests taken by one batch at most; bounds the time a batch holds its locks (PostgreSQL's
/// inventory row, SQLite's writer).
const MAX_BATCH: usize = 256;

type Answer<R> = oneshot::Sender<Result<R, Error>>;
type Done<R> = Pin<Box<dyn Future<Output = Result<Vec<R>, Error>> + Send>>;
type Work<Q, R> = dyn Fn(Arc<[Q]>) -> Done<R> + Send + Sync;

pub struct Batcher<Q, R> {
    inner: Arc<Inner<Q, R>>,
}

struct Inner<Q, R> {
    work: Box<Work<Q, R>>,
    /// Requests waiting for a batch to take them, each with where its answer goes.
    queue: Mutex<Vec<(Q, Answer<R>)>>,
    /// Held by the batch being carried out: the next one waits for it, and meanwhile the
    /// requests it will take pile up.
    turn: tokio::sync::Mutex<()>,
}

impl<Q, R> Batcher<Q, R>
where
    Q: Clone + Send + Sync + 'static,
    R: Send + 'static,
{
    /// `work` carries out the queued requests in arrival order, in one transaction, and
    /// answers each, in the same order. It gets them shared, not copied: a request is copied
    /// only to be made again alone after its batch failed.
    pub fn new<F>(work: impl Fn(Arc<[Q]>) -> F + Send + Sync + 'static) -> Self
    where
        F: Future<Output = Result<Vec<R>, Error>> + Send + 'static,
    {
        let work: Box<Work<Q, R>> = Box::new(move |requests| Box::pin(work(requests)));
        Self {
            inner: Arc::new(Inner {
                work,
                queue: Mutex::new(Vec::new()),
                turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Carries out `request` with whatever else is queued; answers once its batch committed.
    pub async fn call(&self, request: Q) -> Result<R, Error> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push((request, answer));
            queue.len() == 1
        };
        // The request that finds the queue empty starts the batch that will take it; the others
        // ride along. A batch takes the queue when its turn comes, not when it starts, so a
        // request queued after that finds the queue empty again and starts the next. The batch
        // is a task of its own: a caller that goes away must not strand the others.
        if first {
            tokio::spawn(carry_out_next(self.inner.clone()));
        }
        answered
            .await
            .map_err(|_| Error::Internal("the batcher has stopped".into()))?
    }
}

/// Waits for the batch before to end, then carries out what is queued by then, a batch at a
/// time. Requests left behind by a full batch queued onto a non-empty queue, so none of them
/// started a batch: this task carries them out next.
async fn carry_out_next<Q: Clone, R>(inner: Arc<Inner<Q, R>>) {
    let _turn = inner.turn.lock().await;
    loop {
        let (queued, more) = {
            let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let taken = queue.len().min(MAX_BATCH);
            let rest = queue.split_off(taken);
            let more = !rest.is_empty();
            (std::mem::replace(&mut *queue, rest), more)
        };
        let (requests, answers): (Vec<Q>, Vec<Answer<R>>) = queued.into_iter().unzip();
        let results = carry_out(inner.work.as_ref(), requests).await;
        for (answer, result) in answers.into_iter().zip(results) {
            // The caller may have gone; the work is committed either way.
            let _ = answer.send(result);
        }
        if !more {
            return;
        }
    }
}

/// Runs `work` for the whole batch; if that fails, for each request alone. One result per
/// request.
async fn carry_out<Q: Clone, R>(work: &Work<Q, R>, requests: Vec<Q>) -> Vec<Result<R, Error>> {
    let requests: Arc<[Q]> = requests.into();
    let count = requests.len();
    let answered = |answers: Vec<R>, count: usize| {
        if answers.len() == count {
            Ok(answers)
        } else {
            Err(Error::Internal(
                "a batch answered the wrong number of requests".into(),
            ))
        }
    };
    let error = match work(requests.clone())
        .await
        .and_then(|a| answered(a, count))
    {
        Ok(answers) => return answers.into_iter().map(Ok).collect(),
        Err(e) => e,
    };
    if count == 1 {
        return vec![Err(error)];
    }
    let mut alone = Vec::with_capacity(count);
    for request in requests.iter() {
        let answer = work(Arc::new([request.clone()]))
            .await
            .and_then(|a| answered(a, 1));
        alone.push(answer.map(|mut a| a.remove(0)));
    }
    alone
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    type Kept = Arc<Mutex<Vec<i64>>>;
    type Answers = Pin<Box<dyn Future<Output = Result<Vec<usize>, Error>> + Send>>;

    /// Keeps each value unless it was kept before (a unique key), all or nothing per call, once
    /// `gate` lets it; answers how many requests its batch had.
    fn keeper(gate: Arc<Semaphore>) -> (Kept, impl Fn(Arc<[i64]>) -> Answers) {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let store = kept.clone();
        let work = move |values: Arc<[i64]>| {
            let (store, gate) = (store.clone(), gate.clone());
            Box::pin(async move {
                let _open = gate.acquire().await;
                let mut kept = store.lock().unwrap();
                if values.iter().any(|v| kept.contains(v))
                    || (1..values.len()).any(|i| values[..i].contains(&values[i]))
                {
                    return Err(Error::Internal("duplicate".into()));
                }
                kept.extend(values.iter());
                Ok(vec![values.len(); values.len()])
            }) as Answers
        };
        (kept, work)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_queued_while_a_batch_runs_share_the_next() {
        // The first batch waits at the gate until every request has been queued (a call queues
        // its request before it first waits), so the rest must go together.
        let gate = Arc::new(Semaphore::new(0));
        let (kept, work) = keeper(gate.clone());
        let batcher = Arc::new(Batcher::new(work));
        let queued = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|v| {
                let (batcher, queued) = (batcher.clone(), queued.clone());
                tokio::spawn(async move {
                    queued.fetch_add(1, Ordering::SeqCst);
                    batcher.call(v).await.unwrap()
                })
            })
            .collect();
        while queued.load(Ordering::SeqCst) < 200 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(Semaphore::MAX_PERMITS);
        let mut largest = 0;
        for task in tasks {
            largest = largest.max(task.await.unwrap());
        }
        assert!(largest > 1, "the requests queued meanwhile shared a batch");
        assert_eq!(kept.lock().unwrap().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_takes_no_more_than_its_bound_and_the_rest_go_next() {
        // The first batch waits at the gate until more than a batch's worth is queued behind it.
        let gate = Arc::new(Semaphore::new(0));
        let (kept, work) = keeper(gate.clone());
        let batcher = Arc::new(Batcher::new(work));
        let count = MAX_BATCH + 44;
        let tasks: Vec<_> = (0..count as i64)
            .map(|v| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(v).await.unwrap() })
            })
            .collect();
        while batcher.inner.queue.lock().unwrap().len() <= MAX_BATCH {
            tokio::task::yield_now().await;
        }
        gate.add_permits(Semaphore::MAX_PERMITS);
        let all = async {
            let mut largest = 0;
            for task in tasks {
                largest = largest.max(task.await.unwrap());
            }
            largest
        };
        let largest = tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("the requests a full batch left behind are carried out");
        assert_eq!(largest, MAX_BATCH);
        assert_eq!(kept.lock().unwrap().len(), count);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_fails_fails_alone_and_the_rest_of_its_batch_commits() {
        let (kept, work) = keeper(Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)));
        let batcher = Arc::new(Batcher::new(work));
        // 7 twice: one of the two is refused, whichever batch it lands in.
        let tasks: Vec<_> = [1, 2, 7, 3, 7, 4, 5]
            .into_iter()
            .map(|v| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(v).await })
            })
            .collect();
        let mut failures = 0;
        for task in tasks {
            failures += usize::from(task.await.unwrap().is_err());
        }
        assert_eq!(failures, 1);
        let mut values = kept.lock().unwrap().clone();
        values.sort_unstable();
        assert_eq!(values, [1, 2, 3, 4, 5, 7]);
    }
}
