//! Outbox positions become visible in increasing order even when many transactions append at
//! once (see `mongo::outbox` and the shared check in `bus::conformance`), and the backlog is
//! measured right. Against a real server, in fresh databases.

use std::sync::Arc;
use std::time::Duration;

use bus::conformance::{self, Append, Positions};
use mongo::testing::TestDatabase;
use mongo::{Mongo, MongoOutbox, Options};

const WRITERS: usize = 4;
const COMMITS_EACH: usize = 25;

fn open(url: &str) -> Mongo {
    let options = Options {
        service: "ordering",
        collections: Vec::new(),
        seeds: Vec::new(),
    };
    Mongo::open(url, options).expect("a valid URL")
}

#[tokio::test]
async fn the_backlog_counts_what_waits_and_dates_the_oldest() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let mongo = open(&db.url);
    mongo.migrate().await.expect("collections");
    let writer = mongo.clone();
    let append: Append = Box::new(move |envelope| {
        let mongo = writer.clone();
        Box::pin(async move {
            mongo
                .transaction(&envelope, |unit, envelope| {
                    Box::pin(async move {
                        unit.caused.push(envelope.clone());
                        Ok(())
                    })
                })
                .await?;
            Ok(())
        })
    });
    conformance::the_backlog_counts_what_waits_and_dates_the_oldest(
        Arc::new(MongoOutbox(mongo)),
        append,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let reader = open(&db.url);
    reader.migrate().await.expect("collections");

    let writers = (0..WRITERS)
        .map(|_| {
            // A handle each, as separate processes would have: their transactions do not take
            // turns in this process but conflict in the database, and are retried.
            let mongo = open(&db.url);
            let append: Append = Box::new(move |envelope| {
                let mongo = mongo.clone();
                Box::pin(async move {
                    mongo
                        .transaction(&envelope, |unit, envelope| {
                            Box::pin(async move {
                                // Widens the window in which transactions overlap.
                                let pause = rand::random_range(0..4);
                                tokio::time::sleep(Duration::from_millis(pause)).await;
                                unit.caused.push(envelope.clone());
                                Ok(())
                            })
                        })
                        .await?;
                    Ok(())
                })
            });
            append
        })
        .collect();
    conformance::a_reader_that_only_moves_forward_misses_no_concurrent_commit(
        Arc::new(MongoOutbox(reader)),
        writers,
        COMMITS_EACH,
        Positions::Increasing,
    )
    .await;
}
