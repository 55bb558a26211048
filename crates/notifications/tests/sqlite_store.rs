//! The notification store conformance suite against SQLite (a real database file), and the
//! sender with the file transport.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notifications::conformance;
use notifications::domain::Mail;
use notifications::mail::{FileTransport, SendError, Transport};
use notifications::store::MailStatus;
use notifications::{NotificationStore, SqlNotificationStore};
use tokio_util::sync::CancellationToken;

async fn fresh() -> (tempfile::TempDir, Arc<dyn NotificationStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlNotificationStore::open(&dir.path().join("notifications.db")).unwrap();
    (dir, Arc::new(store))
}

notifications::conformance_tests!(fresh);

/// The file transport, but the process "dies" right after the file is written: the mail is
/// never recorded as sent.
struct DiesAfterWriting(FileTransport);

#[async_trait]
impl Transport for DiesAfterWriting {
    async fn send(&self, mail: &Mail) -> Result<(), SendError> {
        self.0.send(mail).await?;
        Err(SendError::transient(
            "killed before recording the mail as sent".into(),
        ))
    }
}

async fn wait_until_sent(store: &Arc<dyn NotificationStore>, count: usize) {
    for _ in 0..200 {
        let mails = store.mails().await.unwrap();
        if mails
            .iter()
            .filter(|m| m.status == MailStatus::Sent)
            .count()
            == count
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the mails were not sent");
}

/// A mail written but not recorded as sent (a crash between the two) is sent again after the
/// restart, and the file transport keeps it one file: exactly one mail per fact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_sending_and_recording_leaves_one_mail() {
    let (dir, store) = fresh().await;
    let outbox = dir.path().join("mail");
    let from: lettre::message::Mailbox = "MyEvents <t@myevents.example>".parse().unwrap();
    store
        .apply(
            vec![(
                "m1".into(),
                notifications::Received {
                    event: conformance::welcome("u1"),
                    at: chrono::Utc::now(),
                    trace: None,
                },
            )],
            &notifications::BookingLinks::none(),
        )
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let dying = Arc::new(DiesAfterWriting(FileTransport::new(
        outbox.clone(),
        from.clone(),
    )));
    let first = notifications::sender::spawn_sender(store.clone(), dying, stop.clone());
    for _ in 0..200 {
        if outbox.join("welcome-u1.eml").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    first.await.unwrap();
    let written = std::fs::read(outbox.join("welcome-u1.eml")).unwrap();

    // The restarted sender's first retry comes after the failed attempt's pause (2 s).
    let stop = CancellationToken::new();
    let healthy = Arc::new(FileTransport::new(outbox.clone(), from));
    let second = notifications::sender::spawn_sender(store.clone(), healthy, stop.clone());
    wait_until_sent(&store, 1).await;
    stop.cancel();
    second.await.unwrap();
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    assert_eq!(
        std::fs::read(outbox.join("welcome-u1.eml")).unwrap(),
        written
    );
}
