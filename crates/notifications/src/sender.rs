//! Sends the mails the store has queued, and records each as sent.
//!
//! One mail per fact: the consumer queues a fact's mail once (its id is the fact's, and the
//! inbox drops redelivered messages), and the sender marks it sent after the transport took it.
//! The one gap left is a process that dies after the transport took a mail and before the mark
//! is committed: the mail is sent again on restart. The file transport closes that gap (a mail
//! whose file exists is not written again); over SMTP it cannot be closed from this side (the
//! server has the mail, we do not know it), so the second copy carries the same Message-ID,
//! which mail clients use to show it once.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::mail::Transport;
use crate::store::NotificationStore;

/// Failed attempts (2 s, 4 s, … apart) before a mail is given up as `failed`.
pub const GIVE_UP_AFTER: u32 = 10;
const BATCH: usize = 256;
/// A commit wakes the sender at once; this catches mails whose retry time has come.
const POLL: Duration = Duration::from_secs(1);

pub fn spawn_sender(
    store: Arc<dyn NotificationStore>,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let committed = store.committed();
        while !shutdown.is_cancelled() {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let due = match store.due(BATCH).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the mails due; will retry");
                    Vec::new()
                }
            };
            // Sent mails are recorded together, one write for the batch.
            let mut sent = Vec::with_capacity(due.len());
            for mail in &due {
                match transport.send(mail).await {
                    Ok(()) => sent.push(mail.id.clone()),
                    Err(error) => {
                        tracing::warn!(id = %mail.id, to = %mail.to, %error, "mail not sent; will retry");
                        if let Err(error) = store.mark_failed(&mail.id, &error, GIVE_UP_AFTER).await
                        {
                            tracing::warn!(id = %mail.id, %error, "cannot record a failed attempt");
                        }
                    }
                }
            }
            if !sent.is_empty()
                && let Err(error) = store.mark_sent(sent).await
            {
                tracing::warn!(%error, "cannot record mails as sent; they may be sent again");
            }
            if due.len() == BATCH {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
}
