//! Outbox positions become visible in increasing order, without holes, even when many writers
//! append at once (see `dynamo::outbox` and the shared check in `bus::conformance`). Each
//! writer has a handle of its own, as separate processes would, so they race for the outbox
//! counter. And the backlog is measured right. Against a real server, under a fresh table prefix.

use std::sync::Arc;

use bus::conformance::{self, Append, Positions};
use dynamo::testing::TestDatabase;
use dynamo::{Commit, Dynamo, DynamoOutbox, Options, outbox};

const WRITERS: usize = 4;
const COMMITS_EACH: usize = 15;

fn open(url: &str) -> Dynamo {
    Dynamo::open(
        url,
        Options {
            service: "ordering",
            tables: vec![outbox::table()],
        },
    )
    .expect("a valid URL")
}

fn appender(handle: Dynamo) -> Append {
    Box::new(move |envelope| {
        let handle = handle.clone();
        Box::pin(async move {
            let committed = handle
                .commit(Vec::new(), std::slice::from_ref(&envelope))
                .await?;
            assert_eq!(committed, Commit::Done);
            Ok(())
        })
    })
}

#[tokio::test]
async fn the_backlog_counts_what_waits_and_dates_the_oldest() {
    let db = TestDatabase::create();
    open(&db.url).create_tables().await.expect("tables");
    conformance::the_backlog_counts_what_waits_and_dates_the_oldest(
        Arc::new(DynamoOutbox(open(&db.url))),
        appender(open(&db.url)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let db = TestDatabase::create();
    open(&db.url).create_tables().await.expect("tables");

    let writers = (0..WRITERS).map(|_| appender(open(&db.url))).collect();
    conformance::a_reader_that_only_moves_forward_misses_no_concurrent_commit(
        Arc::new(DynamoOutbox(open(&db.url))),
        writers,
        COMMITS_EACH,
        Positions::WithoutHoles,
    )
    .await;
}
