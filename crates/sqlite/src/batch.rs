//! Many requests of one kind carried out by one write job, for the hottest writes.
//!
//! [`Db::write`] runs each request as its own job in its own savepoint: simple, and one failed
//! request rolls back alone. For a flash sale that is most of the writer thread's time: a
//! savepoint, the seat update and its release for every booking, all on the one row. A
//! [`Batcher`] queues its requests instead and hands the writer one job that takes the whole
//! queue, so `work` sees every booking that arrived meanwhile at once and can take their seats
//! with one update. The queue fills while the writer is busy with the previous batch, which is
//! exactly when batching pays.
//!
//! If `work` fails for the batch, its writes are rolled back and each request is tried again
//! alone, so a request that cannot be carried out fails by itself, as with [`Db::write`].

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::db::{Db, DbError, Job, Reply, run_in_savepoint};

type Answer<R> = oneshot::Sender<Result<R, DbError>>;
/// Requests waiting for a job to take them, each with where its answer goes.
type Queue<Q, R> = Arc<Mutex<Vec<(Q, Answer<R>)>>>;
type Work<Q, R> = dyn Fn(&Connection, &[Q]) -> Result<Vec<R>, DbError> + Send + Sync;

pub struct Batcher<Q, R> {
    db: Db,
    queue: Queue<Q, R>,
    work: Arc<Work<Q, R>>,
}

impl<Q, R> Batcher<Q, R>
where
    Q: Send + 'static,
    R: Send + 'static,
{
    /// `work` gets the queued requests in arrival order and answers each, in the same order,
    /// inside the writer's transaction. It must not block on anything but the database.
    pub fn new(
        db: Db,
        work: impl Fn(&Connection, &[Q]) -> Result<Vec<R>, DbError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            db,
            queue: Arc::new(Mutex::new(Vec::new())),
            work: Arc::new(work),
        }
    }

    /// Carries out `request` with whatever else is queued; answers once its transaction is
    /// durable.
    pub async fn call(&self, request: Q) -> Result<R, DbError> {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock().map_err(|_| DbError::Closed)?;
            queue.push((request, tx));
            queue.len() == 1
        };
        // The request that finds the queue empty sends the job that will take it; the others
        // ride along. A job takes the queue when it runs, not when it is sent, so a request
        // queued after that finds the queue empty again and sends the next job.
        // A job the writer refuses (closed, overloaded) is dropped, and dropping it answers
        // the queued requests (see `Queued`).
        if first && let Err(e) = self.db.submit(self.job()) {
            tracing::debug!(error = %e, "a batch was refused");
        }
        rx.await.unwrap_or(Err(DbError::NotCommitted))
    }

    fn job(&self) -> Job {
        let mut queued = Queued(Some(self.queue.clone()));
        let work = self.work.clone();
        Box::new(move |conn: &Connection| -> Reply {
            let queue = queued.0.take().expect("a job runs once");
            let (requests, answers): (Vec<Q>, Vec<Answer<R>>) = take(&queue).into_iter().unzip();
            let results = carry_out(conn, work.as_ref(), &requests);
            Box::new(move |commit: Result<(), DbError>| {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(match &commit {
                        Ok(()) => result,
                        Err(e) => Err(e.clone()),
                    });
                }
            })
        })
    }
}

/// A job's hold on the queue, given up when the job runs. The writer drops a job unrun when it
/// cannot begin a transaction or is shutting down: the requests queued for that job are then
/// answered here, rather than left waiting for a job that will not come (and holding the queue
/// non-empty, so that no later request would send one either).
struct Queued<Q, R>(Option<Queue<Q, R>>);

impl<Q, R> Drop for Queued<Q, R> {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            for (_, answer) in take(&queue) {
                let _ = answer.send(Err(DbError::NotCommitted));
            }
        }
    }
}

fn take<T>(queue: &Mutex<Vec<T>>) -> Vec<T> {
    // A poisoned queue only means a thread panicked while pushing; the entries are whole.
    std::mem::take(
        &mut *queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Runs `work` for the whole batch in one savepoint; if that fails, for each request alone.
/// Returns one result per request.
fn carry_out<Q, R>(
    conn: &Connection,
    work: &Work<Q, R>,
    requests: &[Q],
) -> Vec<Result<R, DbError>> {
    // One answer per request, or the savepoint's writes are rolled back.
    let answered = |c: &Connection, batch: &[Q]| {
        let answers = work(c, batch)?;
        if answers.len() == batch.len() {
            Ok(answers)
        } else {
            Err(DbError::Internal(
                "a batch answered the wrong number of requests".into(),
            ))
        }
    };
    match run_in_savepoint(conn, |c| answered(c, requests)) {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(_) if requests.len() > 1 => requests
            .iter()
            .map(|request| {
                run_in_savepoint(conn, |c| answered(c, std::slice::from_ref(request)))
                    .and_then(|mut answers| answers.pop().ok_or(DbError::NotCommitted))
            })
            .collect(),
        Err(e) => vec![Err(e)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::open;

    /// Inserts each value; answers how many requests its batch had.
    fn insert_all(conn: &Connection, values: &[i64]) -> Result<Vec<usize>, DbError> {
        for v in values {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        }
        Ok(vec![values.len(); values.len()])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_each_is_answered_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let batcher = Arc::new(Batcher::new(db.clone(), insert_all));
        let tasks: Vec<_> = (0..200)
            .map(|v| {
                let batcher = batcher.clone();
                let db = db.clone();
                tokio::spawn(async move {
                    let batch = batcher.call(v).await.unwrap();
                    // Answered only once committed: a reader sees the row.
                    let seen: i64 = db
                        .read(move |c| {
                            c.query_row("SELECT COUNT(*) FROM t WHERE v = ?1", [v], |r| r.get(0))
                        })
                        .await
                        .unwrap();
                    (batch, seen)
                })
            })
            .collect();
        let mut largest = 0;
        for task in tasks {
            let (batch, seen) = task.await.unwrap();
            assert_eq!(seen, 1);
            largest = largest.max(batch);
        }
        assert!(largest > 1, "some requests shared a batch");
        let count: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(count, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_fails_fails_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let batcher = Arc::new(Batcher::new(db.clone(), insert_all));
        // 7 twice: one of the two breaks the unique constraint, whichever batch it lands in.
        let tasks: Vec<_> = [1, 2, 7, 3, 7, 4, 5]
            .into_iter()
            .map(|v| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(v).await })
            })
            .collect();
        let mut failures = 0;
        for task in tasks {
            if task.await.unwrap().is_err() {
                failures += 1;
            }
        }
        assert_eq!(failures, 1);
        let values: Vec<i64> = db
            .read(|c| {
                c.prepare("SELECT v FROM t ORDER BY v")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .unwrap();
        assert_eq!(values, [1, 2, 3, 4, 5, 7]);
    }

    #[tokio::test]
    async fn requests_of_a_job_dropped_unrun_are_answered_and_later_ones_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let batcher = Arc::new(Batcher::new(db.clone(), insert_all));
        // Queued as `call` would, but the job is dropped instead of run, as the writer does
        // when it cannot begin a transaction.
        let (tx, rx) = oneshot::channel();
        batcher.queue.lock().unwrap().push((1, tx));
        drop(batcher.job());
        assert!(matches!(rx.await.unwrap(), Err(DbError::NotCommitted)));
        assert_eq!(batcher.call(2).await.unwrap(), 1, "the queue is free again");
    }

    #[tokio::test]
    async fn a_closed_database_answers_every_request_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir);
        let batcher = Batcher::new(db.clone(), insert_all);
        db.close();
        // The job is refused and dropped unrun: each request is told nothing was written.
        assert!(matches!(batcher.call(1).await, Err(DbError::NotCommitted)));
        assert!(matches!(batcher.call(2).await, Err(DbError::NotCommitted)));
    }
}
