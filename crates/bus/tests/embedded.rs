//! The bus conformance suite against the embedded log (a real SQLite file).

use bus::conformance;
use bus::embedded::EmbeddedLog;

fn log_at(dir: &tempfile::TempDir) -> impl Fn() -> std::future::Ready<EmbeddedLog> + '_ {
    move || std::future::ready(EmbeddedLog::open(&dir.path().join("bus.db")).expect("open log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    conformance::every_group_gets_every_event_in_order(log_at(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_events_come_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    conformance::unacknowledged_events_come_again_after_restart(log_at(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    conformance::a_duplicate_is_applied_once(log_at(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_and_the_rest_flow() {
    let dir = tempfile::tempdir().unwrap();
    conformance::a_poison_message_is_parked_and_the_rest_flow(log_at(&dir)).await;
    let log = EmbeddedLog::open(&dir.path().join("bus.db")).unwrap();
    let parked = log.dead_letters().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].consumer, "poison");
}

/// The embedded log has no server: its "restart" is every handle closing and the file being
/// opened again, which `open` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_published_around_it() {
    let dir = tempfile::tempdir().unwrap();
    conformance::a_broker_restart_loses_nothing_published_around_it(log_at(&dir), || async {})
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_in_the_broker_survive_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    conformance::messages_waiting_in_the_broker_survive_its_restart(log_at(&dir), || async {})
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_holds_everything_published() {
    let dir = tempfile::tempdir().unwrap();
    conformance::the_history_holds_everything_published(log_at(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_and_oldest_unapplied_age_show_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    conformance::a_groups_lag_and_oldest_unapplied_age_show_what_waits(log_at(&dir)).await;
}
