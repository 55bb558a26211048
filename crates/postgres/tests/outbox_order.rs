//! The relay remembers only the highest outbox position it has published, so positions must
//! become visible in increasing order even when many transactions append at once (see
//! `postgres::outbox`). Against a real server, in a fresh database.

use std::collections::HashSet;
use std::sync::Arc;

use bus::Outbox;
use contracts::{DomainEvent, Envelope, EventCancelled};
use postgres::testing::TestDatabase;
use postgres::{Options, Pg, PgOutbox, outbox};

const WRITERS: usize = 4;
const COMMITS_EACH: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_remembers_its_position_misses_no_concurrent_commit() {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let pg = Pg::connect_lazy(
        &db.url,
        Options {
            schema: "ordering".into(),
            migrations: vec![outbox::MIGRATION],
            max_connections: 8,
        },
    )
    .expect("a valid URL");
    pg.migrate().await.expect("migrations");

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pg = pg.clone();
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..COMMITS_EACH {
                let event = DomainEvent::EventCancelled(EventCancelled {
                    id: format!("w{w}-{i}"),
                });
                let envelope = Envelope::new(&event, None);
                let mut tx = pg.begin().await?;
                outbox::append(&mut tx, std::slice::from_ref(&envelope)).await?;
                // Widens the gap between drawing a position and committing, where a plain
                // sequence lets a later position become visible first.
                postgres::sqlx::query("SELECT pg_sleep(random() * 0.004)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                written.push(envelope.id);
            }
            Ok::<_, anyhow::Error>(written)
        }));
    }

    let reader = Arc::new(PgOutbox(pg.clone()));
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
