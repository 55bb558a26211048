//! The topic, each group's queue and dead-letter queue, and the subscriptions between them,
//! created when missing (every call is idempotent on SNS and SQS).

use aws_sdk_sqs::types::QueueAttributeName;

use super::{EVENT_NAME, MAX_RECEIVES, Queues, SqsBus, VISIBILITY_TIMEOUT_SECONDS};
use crate::Subscription;
use crate::aws::describe;

impl SqsBus {
    pub(super) async fn create_topic(&self) -> Result<String, String> {
        let created = self
            .inner
            .sns
            .create_topic()
            .name(self.topic_name())
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false")
            .send()
            .await
            .map_err(|e| format!("creating the SNS topic: {}", describe(&e)))?;
        created
            .topic_arn()
            .map(str::to_owned)
            .ok_or_else(|| "SNS created the topic but returned no ARN".to_owned())
    }

    /// Creates a FIFO queue, or finds it if it exists, and returns its URL. Only `FifoQueue` is
    /// given here: SQS refuses to "create" an existing queue with other attribute values, so the
    /// changeable ones are set afterwards.
    pub(super) async fn create_queue(&self, name: &str) -> Result<String, String> {
        let created = self
            .inner
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .map_err(|e| format!("creating queue {name}: {}", describe(&e)))?;
        created
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| format!("SQS created queue {name} but returned no URL"))
    }

    /// Messages waiting in the queue at `url` (SQS's approximate count; those received and
    /// not yet deleted are not counted).
    pub(super) async fn waiting(&self, url: &str) -> Result<i64, String> {
        let count = self
            .queue_attribute(url, QueueAttributeName::ApproximateNumberOfMessages)
            .await?;
        count
            .parse()
            .map_err(|e| format!("SQS counted {count:?} messages in {url}: {e}"))
    }

    pub(super) async fn queue_arn(&self, url: &str) -> Result<String, String> {
        self.queue_attribute(url, QueueAttributeName::QueueArn)
            .await
    }

    pub(super) async fn queue_attribute(
        &self,
        url: &str,
        name: QueueAttributeName,
    ) -> Result<String, String> {
        let attributes = self
            .inner
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| format!("reading {name} of {url}: {}", describe(&e)))?;
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .ok_or_else(|| format!("SQS returned no {name} for {url}"))
    }

    /// Creates (or updates) the topic, `subscription`'s queue and dead-letter queue, and the
    /// queue's subscription to the topic. Idempotent.
    pub(super) async fn declare_queues(
        &self,
        subscription: &Subscription,
    ) -> Result<Queues, String> {
        let topic = self.create_topic().await?;
        let dead = self
            .create_queue(&self.dead_letter_name(&subscription.group))
            .await?;
        let dead_arn = self.queue_arn(&dead).await?;
        let url = self
            .create_queue(&self.queue_name(&subscription.group))
            .await?;
        let arn = self.queue_arn(&url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_arn,
            "maxReceiveCount": MAX_RECEIVES,
        });
        // On AWS, SNS may deliver to the queue only if the queue's policy lets the topic send.
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "sns.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": topic } },
            }],
        });
        self.inner
            .sqs
            .set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                VISIBILITY_TIMEOUT_SECONDS.to_string(),
            )
            .send()
            .await
            .map_err(|e| format!("configuring queue {url}: {}", describe(&e)))?;
        if !subscription.events.is_empty() {
            self.subscribe_queue(&topic, &arn, &subscription.events)
                .await?;
        }
        Ok(Queues { url, dead })
    }

    /// Subscribes the queue `queue_arn` to `topic` with raw delivery and a filter on `events`.
    /// SNS refuses a second Subscribe with different attributes (the group now wants other
    /// events), so an existing subscription is updated instead.
    pub(super) async fn subscribe_queue(
        &self,
        topic: &str,
        queue_arn: &str,
        events: &[&'static str],
    ) -> Result<(), String> {
        let sns = &self.inner.sns;
        let filter = serde_json::json!({ EVENT_NAME: events }).to_string();
        let mut next_token = None;
        loop {
            let page = sns
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(|e| format!("listing subscriptions: {}", describe(&e)))?;
            let existing = page.subscriptions().iter().find_map(|s| {
                let arn = s.subscription_arn()?;
                (s.protocol() == Some("sqs")
                    && s.endpoint() == Some(queue_arn)
                    && arn.starts_with("arn:"))
                .then_some(arn)
            });
            if let Some(subscription) = existing {
                for (name, value) in [("RawMessageDelivery", "true"), ("FilterPolicy", &filter)] {
                    sns.set_subscription_attributes()
                        .subscription_arn(subscription)
                        .attribute_name(name)
                        .attribute_value(value)
                        .send()
                        .await
                        .map_err(|e| format!("updating subscription {name}: {}", describe(&e)))?;
                }
                return Ok(());
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        sns.subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(queue_arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", filter)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| format!("subscribing {queue_arn}: {}", describe(&e)))?;
        Ok(())
    }
}
