//! The bus of this process, from `broker.url`: the embedded log, or RabbitMQ, Kafka or SQS when
//! this binary was built with their cargo features.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bus::Bus;
use bus::embedded::EmbeddedLog;
use platform::Config;

use crate::features::with_feature;

/// The bus from `broker.url`: `embedded` (a log in `data_dir/bus.db`, shared by every process
/// using that folder), `embedded:PATH`, `amqp://…` (RabbitMQ), `kafka://…` or `sqs://…`. A
/// broker is not contacted until used, so a service starts while its broker is still down.
pub(crate) fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    let url = config.broker.url.as_str();
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        return with_feature!(
            "rabbitmq",
            "broker.url",
            Arc::new(bus::amqp::AmqpBus::with_namespace(
                url,
                &config.broker.namespace
            )) as Arc<dyn Bus>
        );
    }
    if let Some(brokers) = url.strip_prefix("kafka://") {
        if brokers.is_empty() {
            bail!("broker URL {url:?} names no Kafka broker: use kafka://host:port[,host:port]");
        }
        return with_feature!(
            "kafka",
            "broker.url",
            Arc::new(bus::kafka::KafkaBus::with_namespace(
                brokers,
                &config.broker.namespace
            )) as Arc<dyn Bus>
        );
    }
    if url.starts_with("sqs://") {
        return with_feature!(
            "sqs",
            "broker.url",
            Arc::new(
                bus::sqs::SqsBus::with_namespace(url, &config.broker.namespace)
                    .with_context(|| format!("broker URL {url:?}"))?
            ) as Arc<dyn Bus>
        );
    }
    let path = if url == "embedded" {
        config.data_dir.join("bus.db")
    } else if let Some(path) = url.strip_prefix("embedded:").filter(|p| !p.is_empty()) {
        PathBuf::from(path.trim_start_matches("//"))
    } else {
        bail!(
            "broker URL {:?} is not supported: use embedded, embedded:PATH, amqp://…, kafka://… or \
             sqs://…",
            platform::url::redacted(url)
        );
    };
    let log = EmbeddedLog::open(&path)
        .with_context(|| format!("cannot open the embedded log {}", path.display()))?;
    Ok(Arc::new(log))
}
