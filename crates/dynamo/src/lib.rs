//! DynamoDB as a MyEvents service uses it: a client that connects on first use and recovers by
//! itself, the service's tables created when missing (named `<prefix>.<service>.<table>`, so
//! services sharing an account never see each other's tables), writes made atomic with
//! `TransactWriteItems` and condition expressions, and the outbox and inbox tables every service
//! shares (see `crates/postgres` for the PostgreSQL counterpart and docs/ARCHITECTURE.md for
//! why it works this way).

mod db;
mod error;
pub mod inbox;
pub mod item;
pub mod outbox;
mod request;
mod tables;
pub mod testing;
mod url;

pub use aws_sdk_dynamodb;
pub use db::{Dynamo, MAX_TRANSACTION_ITEMS, jitter};
pub use error::DynamoError;
pub use inbox::{Committed, Deferred, DynamoUnit, Run, until_committed};
pub use outbox::DynamoOutbox;
pub use request::{Commit, Query, Write};
pub use tables::{Index, KeyKind, Options, Table};
pub use url::{Address, DEFAULT_PREFIX, parse_url};

#[cfg(test)]
mod tests {
    use super::{Address, parse_url};

    #[test]
    fn urls_name_an_endpoint_a_region_and_a_prefix() {
        assert_eq!(
            parse_url("dynamodb://127.0.0.1:5000?region=eu-west-1&prefix=shop&writes=serial"),
            Ok(Address {
                endpoint: Some("http://127.0.0.1:5000".into()),
                region: "eu-west-1".into(),
                prefix: "shop".into(),
                serial_writes: true,
            })
        );
        let aws = parse_url("dynamodb://aws?region=us-west-2").unwrap();
        assert_eq!(
            (aws.endpoint, aws.prefix.as_str(), aws.serial_writes),
            (None, "myevents", false)
        );
        // A server of one's own is not taken for one without isolation.
        assert!(!parse_url("dynamodb://h:1?region=r").unwrap().serial_writes);
        assert!(parse_url("dynamodb://h:1?writes=parallel").is_err());
        assert!(parse_url("dynamodb://h:1?prefix=a/b").is_err());
        assert!(parse_url("dynamodb://h:1?colour=red").is_err());
        assert!(parse_url("postgres://h").is_err());
    }
}
