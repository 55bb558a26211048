//! Publishing: in order, in batches that stay under SNS's limits, one message group per entity.

use contracts::Envelope;

use super::wire::{attributes_of, fifo_id};
use super::{BATCH, MAX_BATCH_BYTES, SqsBus};
use crate::aws::describe;

impl SqsBus {
    /// Publishes `batch` in order, ten (or fewer, to stay under SNS's size limit) per call.
    pub(super) async fn publish_to(&self, topic: &str, batch: &[Envelope]) -> Result<(), String> {
        let mut rest = batch;
        while !rest.is_empty() {
            let count = chunk_len(rest);
            let (chunk, later) = rest.split_at(count);
            rest = later;
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, envelope)| publish_entry(i, envelope))
                .collect::<Result<Vec<_>, _>>()?;
            let published = self
                .inner
                .sns
                .publish_batch()
                .topic_arn(topic)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("publishing to SNS: {}", describe(&e)))?;
            // What was taken before the refused one is de-duplicated by SNS when the relay
            // publishes the batch again.
            if let Some(failed) = published.failed().first() {
                return Err(format!(
                    "SNS refused a message: {} {}",
                    failed.code(),
                    failed.message().unwrap_or_default()
                ));
            }
        }
        Ok(())
    }
}

/// How many of `batch`'s first messages fit in one publish call (at least one: SNS says so
/// clearly when a single message is too big).
fn chunk_len(batch: &[Envelope]) -> usize {
    let mut bytes = 0;
    for (i, envelope) in batch.iter().take(BATCH).enumerate() {
        bytes += envelope.payload.len()
            + attributes_of(envelope)
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>();
        if bytes > MAX_BATCH_BYTES && i > 0 {
            return i;
        }
    }
    batch.len().min(BATCH)
}

fn publish_entry(
    index: usize,
    envelope: &Envelope,
) -> Result<aws_sdk_sns::types::PublishBatchRequestEntry, String> {
    // One entity's events form one message group, which SQS delivers in order.
    let group = fifo_id(&envelope.key)
        .or(fifo_id(&envelope.name))
        .unwrap_or("events")
        .to_owned();
    let deduplication = fifo_id(&envelope.id)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let mut entry = aws_sdk_sns::types::PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(&envelope.payload)
        .message_group_id(group)
        .message_deduplication_id(deduplication);
    for (name, value) in attributes_of(envelope) {
        let value = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| e.to_string())?;
        entry = entry.message_attributes(name, value);
    }
    entry.build().map_err(|e| e.to_string())
}
