//! Consuming a group's queue: receive, apply, then delete; release what is to be retried; park
//! in the dead-letter queue what can never be applied.

use std::time::Instant;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName,
};
use contracts::Envelope;
use tokio_util::sync::CancellationToken;

use super::wire::{envelope_of, fifo_id, receive_count, system_attribute, truncated};
use super::{
    BATCH, ERROR, EVENT_NAME, KEY, LAG_EVERY, MAX_ATTEMPTS, MAX_ATTRIBUTES, MESSAGE_ID,
    OCCURRED_AT, SHUTDOWN_GRACE, SqsBus, TRACE,
};
use crate::aws::describe;
use crate::metrics::{self, CONSUMER_LAG, record_outcome};
use crate::relay::backoff;
use crate::{Handler, Outcome, Subscription};

impl SqsBus {
    /// Delivers until `shutdown` (Ok) or until the broker fails (Err).
    pub(super) async fn consume(
        &self,
        subscription: &Subscription,
        handler: &dyn Handler,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let group = subscription.group.as_str();
        metrics::subscribed(subscription);
        // The queue may not exist yet, or no longer (a broker that lost its state).
        let queues = self.declare_queues(subscription).await?;
        let mut failures = 0u32;
        let mut lag_measured: Option<Instant> = None;
        loop {
            if lag_measured.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
                match self.waiting(&queues.url).await {
                    Ok(waiting) => CONSUMER_LAG.with_label_values(&[group]).set(waiting),
                    // The receive that follows says whether the queue is there at all.
                    Err(error) => tracing::debug!(group, %error, "cannot measure the lag"),
                }
                lag_measured = Some(Instant::now());
            }
            let Some(messages) = self.receive(&queues.url, shutdown).await? else {
                return Ok(());
            };
            let mut done = Vec::new();
            let mut held = Vec::new();
            let mut deliveries = Vec::with_capacity(messages.len());
            for message in messages {
                match envelope_of(&message) {
                    Ok(envelope) => deliveries.push((message, envelope)),
                    // No handler can apply a message that does not say what it is.
                    Err(error) => {
                        let outcome = Outcome::Poison(error.clone());
                        record_outcome(group, "unknown", &outcome);
                        tracing::error!(group, %error, "dead-lettering a message that is no event");
                        self.park(&queues.dead, &message, &error).await?;
                        metrics::dead_lettered(group, "unknown");
                        done.push(message);
                    }
                }
            }
            let envelopes: Vec<Envelope> = deliveries.iter().map(|(_, e)| e.clone()).collect();
            metrics::unapplied(group, &envelopes);
            let outcomes = if envelopes.is_empty() {
                Vec::new()
            } else {
                match handler.handle(&envelopes).await {
                    Ok(outcomes) => {
                        failures = 0;
                        outcomes
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::warn!(group, %error, "consumer cannot apply events; will retry");
                        Vec::new()
                    }
                }
            };
            let mut again = Vec::new();
            for (i, (message, envelope)) in deliveries.into_iter().enumerate() {
                // Messages after the handled prefix were not tried; they are held without
                // being judged, or one stuck behind a retry would be parked untried.
                let outcome = match outcomes.get(i).cloned() {
                    Some(Outcome::Retry(error)) if receive_count(&message) >= MAX_ATTEMPTS => {
                        Outcome::Poison(format!("kept failing: {error}"))
                    }
                    Some(outcome) => outcome,
                    None => Outcome::Retry("not handled".into()),
                };
                if i < outcomes.len() {
                    record_outcome(group, &envelope.name, &outcome);
                }
                match outcome {
                    Outcome::Applied | Outcome::Duplicate => done.push(message),
                    Outcome::Poison(error) => {
                        tracing::error!(group, id = %envelope.id, name = %envelope.name, %error, "dead-lettering a message that cannot be applied");
                        self.park(&queues.dead, &message, &error).await?;
                        metrics::dead_lettered(group, &envelope.name);
                        done.push(message);
                    }
                    Outcome::Retry(_) => {
                        held.push(message);
                        again.push(envelope);
                    }
                }
            }
            metrics::unapplied(group, &again);
            self.delete(&queues.url, &done).await?;
            if !held.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures.max(1))) => {}
                    _ = shutdown.cancelled() => {}
                }
                self.release(&queues.url, &held).await?;
            }
        }
    }

    /// The next messages (none after a long poll found nothing), or None once `shutdown` fired.
    async fn receive(
        &self,
        url: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<Message>>, String> {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let request = self
            .inner
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(self.wait.as_secs() as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send();
        tokio::pin!(request);
        let received = tokio::select! {
            received = &mut request => received,
            _ = shutdown.cancelled() => {
                // Messages a receive returns just now would stay hidden for the visibility
                // timeout if it were dropped: let it finish briefly and give them back.
                if let Ok(Ok(received)) = tokio::time::timeout(SHUTDOWN_GRACE, &mut request).await {
                    self.release(url, received.messages()).await?;
                }
                return Ok(None);
            }
        };
        let received = received.map_err(|e| format!("receiving from {url}: {}", describe(&e)))?;
        Ok(Some(received.messages.unwrap_or_default()))
    }

    /// Copies `message` with the reason it cannot be applied to the dead-letter queue `dead`.
    async fn park(&self, dead: &str, message: &Message, error: &str) -> Result<(), String> {
        let mut attributes = message.message_attributes().cloned().unwrap_or_default();
        if attributes.len() >= MAX_ATTRIBUTES {
            // Room for the reason: keep ours, which describe the event.
            attributes.retain(|name, _| {
                [EVENT_NAME, MESSAGE_ID, KEY, OCCURRED_AT, TRACE].contains(&name.as_str())
            });
        }
        let reason = match truncated(error, 1024) {
            "" => "unknown",
            reason => reason,
        };
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| e.to_string())?;
        attributes.insert(ERROR.to_owned(), reason);
        // SQS refuses an empty body; a message without one is parked all the same.
        let body = message
            .body()
            .filter(|b| !b.is_empty())
            .unwrap_or("(empty)");
        let group = system_attribute(message, MessageSystemAttributeName::MessageGroupId)
            .and_then(fifo_id)
            .unwrap_or("dead-letter");
        // The broker's id of the message: parking it again (after a crash) is de-duplicated.
        let deduplication = message
            .message_id()
            .and_then(fifo_id)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
        self.inner
            .sqs
            .send_message()
            .queue_url(dead)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .message_group_id(group)
            .message_deduplication_id(deduplication)
            .send()
            .await
            .map_err(|e| format!("dead-lettering to {dead}: {}", describe(&e)))?;
        Ok(())
    }

    /// Deletes `messages` (applied or parked) from the queue at `url`.
    async fn delete(&self, url: &str, messages: &[Message]) -> Result<(), String> {
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if entries.is_empty() {
            return Ok(());
        }
        let deleted = self
            .inner
            .sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("deleting from {url}: {}", describe(&e)))?;
        for failed in deleted.failed() {
            // It comes again, and the inbox recognises it.
            tracing::warn!(
                url,
                code = failed.code(),
                "SQS did not delete an applied message"
            );
        }
        Ok(())
    }

    /// Makes `messages` visible again at once, so that they are delivered again.
    async fn release(&self, url: &str, messages: &[Message]) -> Result<(), String> {
        let entries = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if entries.is_empty() {
            return Ok(());
        }
        let changed = self
            .inner
            .sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("releasing messages of {url}: {}", describe(&e)))?;
        for failed in changed.failed() {
            // It comes again once its visibility timeout has passed.
            tracing::warn!(url, code = failed.code(), "SQS did not release a message");
        }
        Ok(())
    }
}
