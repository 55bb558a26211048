//! The notifications service against real servers: an SMTP server (aiosmtpd writing a Maildir)
//! receives exactly one mail per fact, also when every event is delivered again; the gRPC
//! Notificator and its health service answer a real client; two instances registered in a real
//! etcd share the calls, and one that stops leaves the rotation.

use std::path::{Path, PathBuf};
use std::process::Command;

use notifications::discovery::NotificatorPool;
use notifications::grpc::proto::SendEmailRequest;
use notifications::grpc::proto::notificator_client::NotificatorClient;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{OwnServer, TestServer, body, eventually, free_port, mail_recorded_sent};

/// aiosmtpd on `port`, delivering into the Maildir `maildir` (scripts/test installs it).
async fn smtp_server(port: u16, maildir: &Path) -> OwnServer {
    OwnServer::spawn(
        Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir),
        "python3 with aiosmtpd (scripts/test installs it)",
    )
    .listening_on(port)
    .await
}

/// The subject and recipient of every mail in the Maildir, sorted.
fn delivered(maildir: &Path) -> Vec<(String, String)> {
    let mut mails = Vec::new();
    for folder in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            mails.push((header("Subject:"), header("To:")));
        }
    }
    mails.sort();
    mails
}

/// A full run — sign-up, booking, customer cancel, guest booking, event cancel — mails each fact
/// once over SMTP; after every consumer is rewound to the start of the log and every event is
/// delivered again, not one more mail arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fact_reaches_the_smtp_server_once_also_after_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let smtp_port = free_port();
    let _smtp = smtp_server(smtp_port, &maildir).await;
    let mail_url = format!("smtp://127.0.0.1:{smtp_port}");
    let env = [("MYEVENTS_MAIL_URL", mail_url.as_str())];
    let mut s = TestServer::start_in(dir.path(), &env).await;

    let admin = s.admin_token().await;
    let ann = s.customer("ann@example.com").await;
    let event = s.bookable_event(&admin, 10).await;
    let path = format!("/events/{event}/bookings");
    let mine = body(s.post(&path, Some(&ann), json!({"seats": 2})).await).await;
    let cancelled = s
        .delete(
            &format!("/bookings/{}", mine["ID"].as_str().unwrap()),
            Some(&ann),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(
        s.book(&event, 3, "guest@example.com").await.status(),
        StatusCode::CREATED
    );
    s.delete(&format!("/events/{event}"), Some(&admin)).await;

    let expected = vec![
        (
            "Booking cancelled: Concert".to_owned(),
            "ann@example.com".to_owned(),
        ),
        (
            "Event cancelled: Concert".to_owned(),
            "guest@example.com".to_owned(),
        ),
        (
            "Welcome to MyEvents".to_owned(),
            "admin@example.com".to_owned(),
        ),
        (
            "Welcome to MyEvents".to_owned(),
            "ann@example.com".to_owned(),
        ),
        (
            "Your tickets for Concert".to_owned(),
            "ann@example.com".to_owned(),
        ),
        (
            "Your tickets for Concert".to_owned(),
            "guest@example.com".to_owned(),
        ),
    ];
    eventually("one mail per fact arrived", || async {
        delivered(&maildir) == expected
    })
    .await;

    assert!(s.stop().success());
    let bus = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    bus.execute("UPDATE offsets SET seq = 0", []).unwrap();
    drop(bus);
    let s = TestServer::start_in(dir.path(), &env).await;
    let metrics_url = format!("{}/metrics", s.metrics);
    eventually("the notifications service saw every event again", || async {
        let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        text.contains(
            "myevents_events_applied_total{consumer=\"notifications\",outcome=\"duplicate\",type=\"bookingCancelled\"} 2",
        )
    })
    .await;
    // A marker behind every redelivered event: a new customer, whose welcome mail is queued
    // after any mail a redelivery could have queued, and sent after it (and after any old mail
    // sent again).
    s.customer("marker@example.com").await;
    eventually("the marker's mail was sent", || async {
        mail_recorded_sent(dir.path(), "marker@example.com")
    })
    .await;
    let mut with_marker = expected.clone();
    with_marker.push((
        "Welcome to MyEvents".to_owned(),
        "marker@example.com".to_owned(),
    ));
    with_marker.sort();
    assert_eq!(delivered(&maildir), with_marker, "no mail twice");
    assert_eq!(
        s.metric("myevents_mails_total{outcome=\"sent\"}").await,
        1.0,
        "only the marker's mail was sent after the restart"
    );
}

/// `SendEmail` queues a mail and answers its id; a bad address is `INVALID_ARGUMENT`; the gRPC
/// health service says the Notificator is serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_notificator_sends_and_refuses_bad_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_ROLES", "notifications")]).await;
    let listen = s.grpc.clone().expect("the Notificator's address");
    let mut client = NotificatorClient::connect(format!("http://{listen}"))
        .await
        .expect("connect to the Notificator");
    let reply = client
        .send_email(SendEmailRequest {
            email: "ann@example.com".into(),
            content: "Doors open at 7.".into(),
        })
        .await
        .expect("SendEmail")
        .into_inner();
    let file = dir.path().join("mail").join(format!("{}.eml", reply.id));
    eventually("the mail was written", || {
        let file = file.clone();
        async move { file.exists() }
    })
    .await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("Doors open at 7."), "{text}");

    let refused = client
        .send_email(SendEmailRequest {
            email: "not-an-address".into(),
            content: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let channel = tonic::transport::Channel::from_shared(format!("http://{listen}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "notificator.Notificator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

/// etcd of the test's own on `client_port`, its data in `dir`.
async fn etcd(client_port: u16, dir: &Path) -> OwnServer {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let client = format!("http://127.0.0.1:{client_port}");
    OwnServer::spawn(
        Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("test={peer}")]),
        "etcd (Debian etcd-server; scripts/test installs it)",
    )
    .listening_on(client_port)
    .await
}

fn mail_count(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("mail"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Two Notificators started before etcd is up register once it is; a client watching etcd
/// spreads its calls over both; one that stops leaves the rotation and the other takes every
/// call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notificators_found_through_etcd_share_calls_and_one_stopping_leaves_the_rotation() {
    let etcd_port = free_port();
    let endpoint = format!("http://127.0.0.1:{etcd_port}");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |dir: PathBuf| {
        let endpoint = endpoint.clone();
        async move {
            let env = [
                ("MYEVENTS_ROLES", "notifications"),
                ("MYEVENTS_ETCD_ENDPOINTS", endpoint.as_str()),
            ];
            let server = TestServer::start_in(&dir, &env).await;
            // What it registers in etcd: 127.0.0.1 and the port it bound.
            let listen = server.grpc.clone().expect("the Notificator's address");
            (server, listen)
        }
    };
    let (mut first, first_addr) = start(dirs[0].path().to_owned()).await;
    let (second, second_addr) = start(dirs[1].path().to_owned()).await;
    let _etcd = etcd(etcd_port, dirs[2].path()).await;

    let stop = CancellationToken::new();
    let pool = NotificatorPool::watch(vec![endpoint.clone()], stop.clone());
    let mut both = vec![first_addr.clone(), second_addr.clone()];
    both.sort();
    eventually("both instances are registered", || {
        let pool = pool.clone();
        let both = both.clone();
        async move { pool.instances() == both }
    })
    .await;
    let mut used = Vec::new();
    for n in 0..6 {
        let (_, instance) = pool
            .send_email("ann@example.com", &format!("message {n}"))
            .await
            .expect("a call through the pool");
        used.push(instance);
    }
    assert!(
        used.contains(&first_addr) && used.contains(&second_addr),
        "{used:?}"
    );
    eventually("each instance sent its share", || async {
        mail_count(dirs[0].path()) == 3 && mail_count(dirs[1].path()) == 3
    })
    .await;

    assert!(first.stop().success());
    eventually("the stopped instance left the rotation", || {
        let pool = pool.clone();
        let left = vec![second_addr.clone()];
        async move { pool.instances() == left }
    })
    .await;
    for n in 0..4 {
        let (_, instance) = pool
            .send_email("ann@example.com", &format!("later {n}"))
            .await
            .expect("a call after one instance stopped");
        assert_eq!(instance, second_addr);
    }
    drop(second);
    stop.cancel();
}
