//! Replicas of a service share one outbox in PostgreSQL: one relay at a time holds it and
//! publishes, another stands by and takes over when the holder goes. Against a real server, with
//! the embedded log as the broker.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bus::Outbox;
use bus::conformance::cancelled;
use bus::embedded::EmbeddedLog;
use contracts::Envelope;
use postgres::testing::TestDatabase;
use postgres::{Options, Pg, PgOutbox, outbox};
use tokio_util::sync::CancellationToken;

async fn fresh() -> (TestDatabase, Pg) {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let pg = Pg::connect_lazy(
        &db.url,
        Options {
            schema: "relays".into(),
            migrations: vec![outbox::MIGRATION],
            max_connections: 8,
        },
    )
    .expect("a valid URL");
    pg.migrate().await.expect("migrations");
    (db, pg)
}

/// Commits `count` events, one transaction each; their ids in commit order.
async fn commit(pg: &Pg, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let envelope = cancelled(&format!("e{n}"));
        ids.push(envelope.id.clone());
        let tx = pg.begin().await.unwrap();
        pg.commit(tx, &[envelope]).await.unwrap();
    }
    ids
}

/// Waits up to 30 s until the broker holds every one of `ids`; what it holds then.
async fn published(log: &EmbeddedLog, ids: &[String]) -> Vec<Envelope> {
    use bus::Bus;
    for _ in 0..300 {
        let history = log.history().await.unwrap();
        let seen: HashSet<&str> = history.iter().map(|e| e.id.as_str()).collect();
        if ids.iter().all(|id| seen.contains(id.as_str())) {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not every event was published within 30 s");
}

/// The ids of `history` in the order they first appear.
fn first_appearances(history: &[Envelope]) -> Vec<String> {
    let mut seen = HashSet::new();
    history
        .iter()
        .filter(|e| seen.insert(e.id.clone()))
        .map(|e| e.id.clone())
        .collect()
}

#[tokio::test]
async fn one_outbox_is_held_by_one_relay_at_a_time() {
    let (_db, pg) = fresh().await;
    let first = PgOutbox::new(pg.clone());
    let second = PgOutbox::new(pg.clone());
    assert!(first.hold().await.unwrap(), "the first to ask holds it");
    assert!(!second.hold().await.unwrap(), "the other stands by");
    // The holder keeps it on its checks, a second later too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(first.hold().await.unwrap());
    assert!(!second.hold().await.unwrap());
    // The holder's process goes (its connection with it): the other takes over.
    drop(first);
    let mut taken = false;
    for _ in 0..50 {
        if second.hold().await.unwrap() {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        taken,
        "the lock of a closed connection is free for the other"
    );
}

/// Two replicas' relays on one outbox: while both run, every event is published once, in
/// commit order; when the holder goes, the other publishes the rest, and no event is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_each_event_once_and_one_takes_over_from_the_other() {
    let (_db, pg) = fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("bus.db")).unwrap());
    let first = bus::spawn_relay(
        "bookings",
        Arc::new(PgOutbox::new(pg.clone())),
        log.clone(),
        CancellationToken::new(),
    );
    // The first relay holds the outbox once it has published something.
    let warmup = commit(&pg, 1).await;
    published(&log, &warmup).await;
    let second_stop = CancellationToken::new();
    let second = bus::spawn_relay(
        "bookings",
        Arc::new(PgOutbox::new(pg.clone())),
        log.clone(),
        second_stop.clone(),
    );

    let both = commit(&pg, 200).await;
    let history = published(&log, &both).await;
    let ids: Vec<&str> = history.iter().map(|e| e.id.as_str()).collect();
    let expected: Vec<&str> = warmup.iter().chain(&both).map(String::as_str).collect();
    assert_eq!(ids, expected, "each event once, in commit order");

    // The holder dies (its task and its connection go at once, as with SIGKILL).
    first.abort();
    let _ = first.await;
    let after = commit(&pg, 200).await;
    let history = published(&log, &after).await;
    let all: Vec<String> = warmup.iter().chain(&both).chain(&after).cloned().collect();
    assert_eq!(
        first_appearances(&history),
        all,
        "every event, first published in commit order"
    );
    // What the first relay published and had not deleted yet may go out again after the
    // takeover (inboxes drop such copies); what was committed after it goes out once.
    for id in &after {
        let times = history.iter().filter(|e| &e.id == id).count();
        assert_eq!(times, 1, "{id} published {times} times");
    }

    second_stop.cancel();
    second.await.unwrap();
}
