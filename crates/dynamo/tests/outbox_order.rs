//! The relay remembers only the highest outbox position it has published, so positions must
//! become visible in increasing order even when many writers append at once (see
//! `dynamo::outbox`). Each writer has a handle of its own, as separate processes would, so they
//! race for the outbox counter. Against a real server, under a fresh table prefix.

use std::collections::HashSet;

use bus::Outbox;
use contracts::{DomainEvent, Envelope, EventCancelled};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let db = TestDatabase::create();
    open(&db.url).create_tables().await.expect("tables");

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let handle = open(&db.url);
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..COMMITS_EACH {
                let event = DomainEvent::EventCancelled(EventCancelled {
                    id: format!("w{w}-{i}"),
                });
                let envelope = Envelope::new(&event, None);
                let committed = handle
                    .commit(Vec::new(), std::slice::from_ref(&envelope))
                    .await?;
                assert_eq!(committed, Commit::Done);
                written.push(envelope.id);
            }
            Ok::<_, anyhow::Error>(written)
        }));
    }

    let reader = DynamoOutbox(open(&db.url));
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
            assert_eq!(seq, position + 1, "positions in order, without holes");
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

    // Published entries are forgotten, and what follows them is still pending.
    reader.mark_published(position - 5).await.expect("marked");
    assert_eq!(reader.backlog(0).await.expect("backlog"), 5);
    let rest = reader.pending(0, 1000).await.expect("outbox readable");
    assert_eq!(rest.first().map(|(p, _)| *p), Some(position - 4));
    assert_eq!(rest.len(), 5);
}
