//! A sale survives losing replicas: one replica of every service is killed with SIGKILL and
//! started again, and then another is stopped with SIGTERM and started again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::testing::TestDatabase;

use super::{
    Nginx, ROLES, Replica, assert_promises_kept, organiser_and_events, start_sale, upstreams,
};

async fn a_sale_survives_losing_replicas(broker: &[(&str, &str)]) {
    let db = TestDatabase::create().await.expect("a PostgreSQL server");
    let mut shared: Vec<(String, String)> = broker
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    shared.push(("MYEVENTS_STORAGE_URL".into(), db.url.clone()));
    let mut replicas: Vec<Replica> = Vec::new();
    for role in ROLES {
        for _ in 0..2 {
            replicas.push(Replica::start(role, &shared).await);
        }
    }
    let nginx = Nginx::start(&upstreams(&replicas)).await;
    let (admin, events) = organiser_and_events(&nginx.base).await;

    // The sale runs for 16 s. Replica 0 of every service is killed and started again; then
    // replica 1 of every service is stopped gracefully and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let (clients, seen) = start_sale(&nginx.base, &events, &stop);
    let stop_later = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(16)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in replicas.iter_mut().step_by(2) {
        r.server.kill();
    }
    for r in replicas.iter_mut().step_by(2) {
        r.restart().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in replicas.iter_mut().skip(1).step_by(2) {
        assert!(r.server.stop().success(), "{}", r.server.log());
        r.restart().await;
    }
    stop_later.await.unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // A mail is sent twice only by a killed replica that had not recorded it: at most a chunk
    // of 16.
    assert_promises_kept(&nginx.base, &admin, &events, &seen, &replicas, 16).await;
    drop(nginx);
}

#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_survives_losing_replicas_over_rabbitmq() {
    let url = crate::helpers::amqp_url();
    let namespace = format!("replicas-{}.", uuid::Uuid::now_v7().simple());
    a_sale_survives_losing_replicas(&[
        ("MYEVENTS_BROKER_URL", &url),
        ("MYEVENTS_BROKER_NAMESPACE", &namespace),
    ])
    .await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_survives_losing_replicas_over_kafka() {
    let url = crate::helpers::kafka_url();
    let namespace = format!("replicas-{}.", uuid::Uuid::now_v7().simple());
    a_sale_survives_losing_replicas(&[
        ("MYEVENTS_BROKER_URL", &url),
        ("MYEVENTS_BROKER_NAMESPACE", &namespace),
    ])
    .await;
}
