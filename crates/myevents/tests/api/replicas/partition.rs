//! Replicas on hosts of their own, and one bookings replica cut off from the database and the
//! broker mid-sale (see [`super::hosts`]). The load balancer is nginx driven as an Ingress
//! controller drives it: each replica's `/health/ready` is probed every 250 ms, and the
//! upstreams are rewritten and reloaded when the set of ready replicas changes.
//!
//! What must hold: the cut-off replica turns not ready, the load balancer stops sending to it, a
//! request under way there fails cleanly (503, never a 201 for a booking that was not
//! committed) and its retry with the same key books once elsewhere; after the link returns the
//! replica turns ready, takes requests again and catches up, with nothing lost or applied twice
//! (SPEC §2's promises, and not one mail sent twice).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::json;

use super::hosts::{Network, forward};
use super::{
    Nginx, ROLES, Replica, assert_promises_kept, bookable_event, organiser_and_events, start_sale,
};
use crate::helpers::{OwnKafka, TestServer, body, until_some, within};

/// What the load balancer did: for each replica address, when it last left and joined the
/// upstreams (Unix seconds).
#[derive(Default)]
struct Balancing {
    left: HashMap<String, f64>,
    joined: HashMap<String, f64>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Keeps nginx's upstreams to the ready replicas among `replicas` ((role, address) pairs), as
/// an Ingress controller keeps them to a Service's ready endpoints. A service none of whose
/// replicas answered its probe keeps the upstreams it had (nginx needs a server, and a probe
/// missed under load must not bring back one that was taken out).
async fn balance(
    nginx: Arc<Nginx>,
    replicas: Vec<(&'static str, String)>,
    log: Arc<Mutex<Balancing>>,
) {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut upstreams: HashMap<&str, Vec<String>> = ROLES
        .iter()
        .map(|role| {
            let mine = replicas.iter().filter(|(r, _)| r == role);
            (*role, mine.map(|(_, a)| a.clone()).collect())
        })
        .collect();
    loop {
        let answers = futures::future::join_all(replicas.iter().map(|(_, addr)| {
            let request = probe.get(format!("http://{addr}/health/ready")).send();
            async move { request.await.is_ok_and(|r| r.status() == StatusCode::OK) }
        }))
        .await;
        let mut wanted = upstreams.clone();
        for role in ROLES {
            let ready: Vec<String> = replicas
                .iter()
                .zip(&answers)
                .filter(|((r, _), ok)| *r == role && **ok)
                .map(|((_, a), _)| a.clone())
                .collect();
            if !ready.is_empty() {
                wanted.insert(role, ready);
            }
        }
        if wanted != upstreams {
            nginx.set_upstreams(&wanted);
            let now = unix_now();
            let serving = |u: &HashMap<&str, Vec<String>>| -> HashSet<String> {
                u.values().flatten().cloned().collect()
            };
            let (before, after) = (serving(&upstreams), serving(&wanted));
            let mut log = log.lock().unwrap();
            for addr in before.difference(&after) {
                log.left.insert(addr.clone(), now);
            }
            for addr in after.difference(&before) {
                log.joined.insert(addr.clone(), now);
            }
            upstreams = wanted;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `url` with its host and port replaced by `addr`'s.
fn via(url: &str, addr: SocketAddr) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.set_ip_host(addr.ip()).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.to_string()
}

/// Where `url`'s server listens, resolved.
fn server_of(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).unwrap();
    (url.host_str().unwrap(), url.port().unwrap())
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// Waits up to `limit` until `server`'s `/health/ready` says `ready`.
async fn turns_ready(server: &TestServer, ready: bool, limit: Duration) {
    within(
        limit,
        &format!("the replica's readiness turns {ready}"),
        || async {
            (server.is_ready().await == ready)
                .then_some(())
                .ok_or_else(|| format!("still {}", !ready))
        },
    )
    .await;
}

/// The broker the replicas reach on the back network.
enum Broker {
    /// The test machine's RabbitMQ, through a forwarder.
    RabbitMq,
    /// A tansu of the test's own, listening on the back network itself: a Kafka client connects
    /// to the address the broker advertises, which a forwarder could not rewrite.
    #[cfg(feature = "kafka")]
    Kafka,
}

/// Starts tansu on `ip` and waits until it listens: its `kafka://` URL.
#[cfg(feature = "kafka")]
async fn own_kafka(ip: std::net::Ipv4Addr) -> (OwnKafka, String) {
    // A port free on the back network's address, which exists only in this test: only a
    // socket bound to every address could take it before tansu does.
    let port = std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kafka = OwnKafka::start(&format!("{ip}:{port}"));
    within(Duration::from_secs(30), "tansu listens", || async {
        tokio::net::TcpStream::connect((ip, port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    (kafka, format!("kafka://{ip}:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bookings_replica_cut_off_mid_sale_fails_cleanly_and_catches_up_over_rabbitmq() {
    a_bookings_replica_cut_off_mid_sale_fails_cleanly_and_catches_up(Broker::RabbitMq).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bookings_replica_cut_off_mid_sale_fails_cleanly_and_catches_up_over_kafka() {
    a_bookings_replica_cut_off_mid_sale_fails_cleanly_and_catches_up(Broker::Kafka).await;
}

async fn a_bookings_replica_cut_off_mid_sale_fails_cleanly_and_catches_up(broker: Broker) {
    let mut network = Network::create();
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let gateway = SocketAddr::from((network.gateway(), 0));
    let pg = forward(gateway, server_of(&db.url)).await;
    // The test's own broker, if it has one, is kept until the end.
    let (broker_url, _own_broker): (String, Option<OwnKafka>) = match broker {
        Broker::RabbitMq => {
            let amqp = crate::helpers::amqp_url();
            (via(&amqp, forward(gateway, server_of(&amqp)).await), None)
        }
        #[cfg(feature = "kafka")]
        Broker::Kafka => {
            let (kafka, url) = own_kafka(network.gateway()).await;
            (url, Some(kafka))
        }
    };
    let shared: Vec<(String, String)> = vec![
        ("MYEVENTS_STORAGE_URL".into(), via(&db.url, pg)),
        ("MYEVENTS_BROKER_URL".into(), broker_url),
        (
            "MYEVENTS_BROKER_NAMESPACE".into(),
            format!("partition-{}.", uuid::Uuid::now_v7().simple()),
        ),
    ];
    let mut hosts = Vec::new();
    let mut replicas: Vec<Replica> = Vec::new();
    for role in ROLES {
        for _ in 0..2 {
            let host = network.add_host();
            replicas.push(Replica::start_on(role, &shared, &host).await);
            hosts.push(host);
        }
    }
    let nginx = Arc::new(Nginx::start(&super::upstreams(&replicas)).await);
    let balancing = Arc::new(Mutex::new(Balancing::default()));
    let balancer = tokio::spawn(balance(
        nginx.clone(),
        replicas.iter().map(|r| (r.role, r.addr())).collect(),
        balancing.clone(),
    ));
    let base = nginx.base.clone();
    let (admin, mut events) = organiser_and_events(&base).await;
    let location = {
        let http = reqwest::Client::new();
        let r = http
            .get(format!("{base}/events/{}", events[1]))
            .send()
            .await
            .unwrap();
        body(r).await["Location"]["ID"].as_str().unwrap().to_owned()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (clients, seen) = start_sale(&base, &events, &stop);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Bookings replica 0 loses the database and the broker.
    let victim = replicas.iter().position(|r| r.role == "bookings").unwrap();
    let victim_addr = replicas[victim].addr();
    hosts[victim].cut_off();
    let cut_at = Instant::now();

    // A booking sent to it now fails cleanly, in bounded time; its retry with the same key
    // through the load balancer books once.
    let key = uuid::Uuid::now_v7().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let book = |url: String| {
        http.post(url)
            .header("Idempotency-Key", &key)
            .json(&json!({"seats": 1, "email": "cut-off@example.com"}))
            .send()
    };
    let in_flight = {
        let request = book(
            replicas[victim]
                .server
                .url(&format!("/events/{}/bookings", events[1])),
        );
        tokio::spawn(async move {
            let sent = Instant::now();
            let answer = request.await.unwrap();
            (
                answer.status(),
                answer.headers().contains_key("retry-after"),
                sent.elapsed(),
            )
        })
    };
    // It turns not ready, and the load balancer takes it out.
    turns_ready(&replicas[victim].server, false, Duration::from_secs(15)).await;
    let left = until_some(
        Duration::from_secs(15),
        "the load balancer takes it out",
        || balancing.lock().unwrap().left.get(&victim_addr).copied(),
    )
    .await;
    eprintln!(
        "partition: out of the load balancer {:?} after the cut",
        cut_at.elapsed()
    );
    let (status, retry_after, failed_after) = in_flight.await.unwrap();
    eprintln!("partition: a booking on the cut-off replica failed after {failed_after:?}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after, "a 503 says when to try again");
    assert!(failed_after < Duration::from_secs(15), "{failed_after:?}");
    let retried = book(format!("{base}/events/{}/bookings", events[1]))
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    let booking = body(retried).await["ID"].as_str().unwrap().to_owned();
    seen.lock()
        .unwrap()
        .confirmed
        .push((booking, events[1].clone()));

    // An event created meanwhile is applied by the bookings replica that is still connected
    // (the broker hands the cut-off consumer's messages on once it misses its heartbeats).
    let during = bookable_event(&base, &admin, &location, "During", "Big").await;
    events.push(during);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The link returns: the replica turns ready, joins the upstreams and takes requests again.
    hosts[victim].reconnect();
    let healed_at = Instant::now();
    turns_ready(&replicas[victim].server, true, Duration::from_secs(90)).await;
    let joined = until_some(
        Duration::from_secs(15),
        "the load balancer takes it back",
        || {
            balancing
                .lock()
                .unwrap()
                .joined
                .get(&victim_addr)
                .copied()
                .filter(|t| *t > left)
        },
    )
    .await;
    eprintln!(
        "partition: back in the load balancer {:?} after the link returned",
        healed_at.elapsed()
    );
    until_some(Duration::from_secs(30), "it takes requests again", || {
        nginx
            .sent()
            .iter()
            .any(|(at, upstream)| *upstream == victim_addr && *at > joined)
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    balancer.abort();

    // Nothing was sent to it while it was out (a second for the reload to take).
    let sent_while_out: Vec<f64> = nginx
        .sent()
        .iter()
        .filter(|(at, upstream)| *upstream == victim_addr && *at > left + 1.0 && *at < joined)
        .map(|(at, _)| *at)
        .collect();
    assert!(
        sent_while_out.is_empty(),
        "{} requests sent to the cut-off replica while it was out",
        sent_while_out.len()
    );

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_promises_kept(&base, &admin, &events, &seen, &replicas, 0).await;
}
