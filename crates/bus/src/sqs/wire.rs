//! SPEC §4's wire format on SNS and SQS: an envelope's body and message attributes, and back.

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use contracts::Envelope;

use super::{EVENT_NAME, KEY, MESSAGE_ID, OCCURRED_AT, TRACE};

/// The message attributes of `envelope`; SNS refuses empty values, so those are left out.
pub(super) fn attributes_of(envelope: &Envelope) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        (EVENT_NAME, envelope.name.clone()),
        (MESSAGE_ID, envelope.id.clone()),
        (KEY, envelope.key.clone()),
        (OCCURRED_AT, envelope.occurred_at.to_rfc3339()),
    ];
    if let Some(trace) = &envelope.trace {
        attributes.push((TRACE, trace.clone()));
    }
    attributes.retain(|(_, value)| !value.is_empty());
    attributes
}

pub(super) fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes()?
        .get(name)?
        .string_value()
        .map(str::to_owned)
}

pub(super) fn system_attribute(
    message: &Message,
    name: MessageSystemAttributeName,
) -> Option<&str> {
    message.attributes()?.get(&name).map(String::as_str)
}

/// How many times SQS has handed out `message`, this time included.
pub(super) fn receive_count(message: &Message) -> u32 {
    system_attribute(message, MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The envelope of a received message, or why it cannot be one. A message from a publisher that
/// set no message id (the reference's) gets one, so it is applied but cannot be recognised if
/// delivered again.
pub(super) fn envelope_of(message: &Message) -> Result<Envelope, String> {
    let name = attribute(message, EVENT_NAME)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("no {EVENT_NAME} attribute"))?;
    let sent_at = || {
        system_attribute(message, MessageSystemAttributeName::SentTimestamp)
            .and_then(|millis| millis.parse().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis)
    };
    Ok(Envelope {
        id: attribute(message, MESSAGE_ID).unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        key: attribute(message, KEY)
            .or_else(|| {
                system_attribute(message, MessageSystemAttributeName::MessageGroupId)
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        occurred_at: attribute(message, OCCURRED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(sent_at)
            .unwrap_or_else(Utc::now),
        trace: attribute(message, TRACE),
        payload: message.body().unwrap_or_default().to_owned(),
        name,
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(super) fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `value` if SQS takes it as a message group or de-duplication id (1–128 printable ASCII
/// characters).
pub(super) fn fifo_id(value: &str) -> Option<&str> {
    let valid =
        !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(value)
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{Message, MessageAttributeValue};

    use super::{attributes_of, envelope_of};

    #[test]
    fn an_envelope_round_trips_through_attributes() {
        let mut envelope = crate::conformance::cancelled("e1");
        envelope.trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let mut message = Message::builder().body(&envelope.payload);
        for (name, value) in attributes_of(&envelope) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .unwrap();
            message = message.message_attributes(name, value);
        }
        assert_eq!(envelope_of(&message.build()).unwrap(), envelope);
    }

    #[test]
    fn a_message_without_an_event_name_is_no_envelope() {
        let message = Message::builder().body("{}").build();
        assert!(envelope_of(&message).is_err());
    }
}
