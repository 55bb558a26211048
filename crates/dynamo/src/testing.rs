//! A fresh, isolated database for each test on a real server: `MYEVENTS_TEST_DYNAMODB_URL`
//! (default `dynamodb://127.0.0.1:5000?region=us-east-1&writes=serial`, the local moto, which
//! needs its writes one at a time) with a table prefix of its own; the tables under that prefix are deleted when the [`TestDatabase`] is dropped.

use crate::{Dynamo, Options};

pub const URL_VARIABLE: &str = "MYEVENTS_TEST_DYNAMODB_URL";
pub const DEFAULT_URL: &str = "dynamodb://127.0.0.1:5000?region=us-east-1&writes=serial";

pub struct TestDatabase {
    prefix: String,
    /// The URL of the new database: the server's, with the test's prefix.
    pub url: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let server = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let prefix = format!("test-{:016x}", rand::random::<u64>());
        let separator = if server.contains('?') { '&' } else { '?' };
        TestDatabase {
            url: format!("{server}{separator}prefix={prefix}"),
            prefix,
        }
    }
}

/// Deletes every table whose name starts with `prefix.` on the server of `url`.
pub async fn delete_tables(url: &str, prefix: &str) -> anyhow::Result<()> {
    let db = Dynamo::open(
        url,
        Options {
            service: "cleanup",
            tables: Vec::new(),
        },
    )?;
    let client = db.client().await?;
    let names: Vec<String> = client
        .list_tables()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await?;
    let ours = format!("{prefix}.");
    for name in names.into_iter().filter(|n| n.starts_with(&ours)) {
        client.delete_table().table_name(name).send().await?;
    }
    Ok(())
}

impl Drop for TestDatabase {
    /// Deletes the test's tables; best effort, from a thread of its own because `Drop` cannot
    /// wait for async work on the test's runtime.
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delete_tables(&url, &prefix))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete the test tables {}.*", self.prefix);
        }
    }
}
