//! The relay remembers only the highest outbox position it has published, so positions must
//! become visible in increasing order even when many transactions append at once (see
//! `mongo::outbox`). Against a real server, in fresh databases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bus::Outbox;
use contracts::{DomainEvent, Envelope, EventCancelled};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let db = TestDatabase::create().await.expect("a MongoDB server");
    let reader = open(&db.url);
    reader.migrate().await.expect("collections");

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        // A handle each, as separate processes would have: their transactions do not take
        // turns in this process but conflict in the database, and are retried.
        let mongo = open(&db.url);
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..COMMITS_EACH {
                let event = DomainEvent::EventCancelled(EventCancelled {
                    id: format!("w{w}-{i}"),
                });
                let envelope = Envelope::new(&event, None);
                mongo
                    .transaction(&envelope, |_, envelope| {
                        Box::pin(async move {
                            // Widens the window in which transactions overlap.
                            let pause = rand::random_range(0..4);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                            Ok(((), vec![envelope.clone()]))
                        })
                    })
                    .await?;
                written.push(envelope.id);
            }
            Ok::<_, mongo::MongoError>(written)
        }));
    }

    let reader = Arc::new(MongoOutbox(reader));
    let mut seen = HashSet::new();
    let mut position = 0;
    let mut finished = false;
    loop {
        // Read once more after the writers are done: everything is committed by then.
        finished = finished || writers.iter().all(|w| w.is_finished());
        let batch = reader
            .pending(position, 1000)
            .await
            .expect("outbox readable");
        for (seq, envelope) in batch {
            assert!(seq > position, "positions in order");
            position = seq;
            seen.insert(envelope.id);
        }
        if finished {
            break;
        }
        tokio::task::yield_now().await;
    }

    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.expect("writer task").expect("writes"));
    }
    assert_eq!(written.len(), WRITERS * COMMITS_EACH);
    let missed = written.difference(&seen).count();
    assert_eq!(
        missed, 0,
        "events skipped by a reader that only moves forward"
    );
}
