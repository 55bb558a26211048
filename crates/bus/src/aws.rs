//! What every AWS client of MyEvents shares (SQS and SNS here, DynamoDB in `crates/dynamo`):
//! credentials, an HTTPS client without aws-lc, timeouts, and readable errors.

use std::time::Duration;

use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Credentials, SharedHttpClient};
use aws_smithy_http_client::tls;

/// The environment's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`); for an endpoint of one's own (moto, DynamoDB Local) without any, dummy
/// ones, since such servers accept anything.
pub fn credentials(own_endpoint: bool) -> Result<Credentials, String> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(key), Some(secret)) => Ok(Credentials::new(
            key,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        )),
        _ if own_endpoint => Ok(Credentials::new("test", "test", None, None, "dummy")),
        _ => Err("AWS needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment".into()),
    }
}

/// HTTPS through rustls with ring: the SDK's default TLS stack (aws-lc) is a long C build.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// A 3 s connect timeout and `attempt` per attempt of an operation.
pub fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(attempt)
        .build()
}

/// The region of a URL's `region=` parameter, else `AWS_REGION`, else `us-east-1`.
pub fn region(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// `error` and its causes on one line: the SDK's own message is only "dispatch failure" or
/// "service error", the reason is in its sources.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
