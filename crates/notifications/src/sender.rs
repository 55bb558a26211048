//! Sends the mails the store has queued, and records each as sent.
//!
//! One mail per fact: the consumer queues a fact's mail once (its id is the fact's, and the
//! inbox drops redelivered messages), and the sender records it sent after the transport took
//! it. The one gap left is a process that dies after the transport took a mail and before the
//! record is committed: that mail is sent again on restart. The sender keeps the gap small — it
//! records every few mails, stops taking new mails on shutdown and records what it sent, and
//! never sends again a mail it could not record (it keeps retrying the record instead). The
//! file transport closes the gap (a mail whose file exists is not written again); over SMTP it
//! cannot be closed from this side (the server has the mail, we do not know it), so the second
//! copy carries the same Message-ID, which mail clients use to show it once.
//!
//! Replicas of the notifications service share one queue: each sender claims the mails it
//! sends ([`NotificationStore::claim`]), so two never send the same mail, and a mail claimed by
//! a sender that died comes due again a minute later.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use platform::metrics::AgeGauge;
use prometheus::{IntCounterVec, IntGauge, register_int_counter_vec, register_int_gauge};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::Mail;
use crate::mail::Transport;
use crate::store::NotificationStore;

const BATCH: usize = 256;
/// Sent mails are recorded at least this often, so a crash resends at most this many.
const RECORD_EVERY: usize = 16;
/// How long the mails a sender takes are its own: replicas' senders share one queue, and
/// a mail that a dead sender took comes due again after this. Far longer than a batch takes.
const CLAIM_FOR: Duration = Duration::from_secs(60);
/// A commit wakes the sender at once; this catches mails whose retry time has come.
const POLL: Duration = Duration::from_secs(1);

/// How often the queue's gauges are measured: each time counts the queue in the database.
const MEASURE_EVERY: Duration = Duration::from_secs(5);

static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "myevents_mail_queue_depth",
        "Mails waiting to be sent, due now or after a failed attempt"
    )
    .expect("metric names are static and valid")
});

static OLDEST_DUE: LazyLock<AgeGauge> = LazyLock::new(|| {
    AgeGauge::register(
        "myevents_mail_oldest_due_age_seconds",
        "How long the mail due first has been waiting since it became due (0 when none is due)",
        &[],
    )
});

static MAILS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_mails_total",
        "Mails handed to the transport, by outcome (sent, retry, failed)",
        &["outcome"]
    )
    .expect("metric names are static and valid")
});

pub fn spawn_sender(
    store: Arc<dyn NotificationStore>,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let committed = store.committed();
        // Sent, but not yet recorded as sent: never sent again, recorded before anything new.
        let mut unrecorded: Vec<String> = Vec::new();
        let mut failures = 0u32;
        let mut measured: Option<Instant> = None;
        loop {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if measured.is_none_or(|at| at.elapsed() >= MEASURE_EVERY) {
                measure(store.as_ref()).await;
                measured = Some(Instant::now());
            }
            if !record(store.as_ref(), &mut unrecorded).await {
                failures += 1;
                if shutdown.is_cancelled() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(bus::backoff(failures)) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            failures = 0;
            if shutdown.is_cancelled() {
                break;
            }
            let due = match store.claim(BATCH, CLAIM_FOR).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the mails due; will retry");
                    Vec::new()
                }
            };
            let taken: HashSet<String> = unrecorded.iter().cloned().collect();
            let more_due = due.len() == BATCH;
            let fresh: Vec<Mail> = due.into_iter().filter(|m| !taken.contains(&m.id)).collect();
            // A few mails at a time, each few recorded before the next: a crash resends at
            // most that many, and shutdown waits for one chunk at most.
            for chunk in fresh.chunks(RECORD_EVERY) {
                if shutdown.is_cancelled() {
                    break;
                }
                // A span per mail that came with a trace, lasting as long as its chunk's
                // sending: the booking's trace ends with its confirmation going out.
                let spans: Vec<tracing::Span> = chunk
                    .iter()
                    .filter_map(|mail| {
                        let trace = mail.trace.as_deref()?;
                        Some(platform::telemetry::message_span(
                            "send mail",
                            "client",
                            &mail.id,
                            trace,
                        ))
                    })
                    .collect();
                let outcomes = transport.send_all(chunk).await;
                drop(spans);
                for (mail, outcome) in chunk.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => {
                            MAILS.with_label_values(&["sent"]).inc();
                            unrecorded.push(mail.id.clone());
                        }
                        Err(error) => {
                            let outcome = if error.permanent { "failed" } else { "retry" };
                            MAILS.with_label_values(&[outcome]).inc();
                            tracing::warn!(id = %mail.id, to = %mail.to, %error, permanent = error.permanent, "mail not sent");
                            if let Err(error) = store
                                .mark_failed(&mail.id, &error.message, error.permanent)
                                .await
                            {
                                tracing::warn!(id = %mail.id, %error, "cannot record a failed attempt");
                            }
                        }
                    }
                }
                if !record(store.as_ref(), &mut unrecorded).await {
                    break;
                }
            }
            if more_due {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if !unrecorded.is_empty() {
            tracing::warn!(
                count = unrecorded.len(),
                "stopping with sent mails not recorded; they will be sent again"
            );
        }
    })
}

/// Sets the queue's gauges; leaves them as they were if the store cannot say.
async fn measure(store: &dyn NotificationStore) {
    match store.mail_queue().await {
        Ok(queue) => {
            QUEUE_DEPTH.set(i64::try_from(queue.depth).unwrap_or(i64::MAX));
            OLDEST_DUE.set(&[], queue.first_due);
        }
        Err(error) => tracing::debug!(%error, "cannot measure the mail queue"),
    }
}

/// Records `unrecorded` as sent; true when nothing is left to record.
async fn record(store: &dyn NotificationStore, unrecorded: &mut Vec<String>) -> bool {
    if unrecorded.is_empty() {
        return true;
    }
    match store.mark_sent(unrecorded.clone()).await {
        Ok(()) => {
            unrecorded.clear();
            true
        }
        Err(error) => {
            tracing::warn!(%error, count = unrecorded.len(), "cannot record sent mails; will retry before sending more");
            false
        }
    }
}
