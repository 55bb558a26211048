//! Two replicas of every service, each a process of its own, on one PostgreSQL database and one
//! broker, behind a real nginx configured from the gateway's template (each API path to its
//! service, spread over that service's replicas), with a sale running through it:
//!
//! - [`losing`]: one replica of every service is killed and started again, another stopped
//!   gracefully and started again;
//! - [`partition`]: every replica on a test host of its own ([`hosts`]), and one bookings replica
//!   cut off from the database and the broker mid-sale, then reconnected.
//!
//! Afterwards SPEC §2's promises hold ([`assert_promises_kept`]).

#[cfg(feature = "rabbitmq")]
mod hosts;
mod losing;
#[cfg(feature = "rabbitmq")]
mod partition;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestServer, body, within};

const ROLES: [&str; 4] = ["users", "events", "bookings", "notifications"];
const SECRET: (&str, &str) = ("MYEVENTS_JWT_SECRET", "one-secret-for-every-replica");
/// The hot event's seats: fewer than the sale wants.
const HOT_SEATS: i64 = 60;

/// nginx from Debian (scripts/test installs it), in a folder of its own, in the foreground.
/// Its access log says when each request was sent to which replica.
struct Nginx {
    child: Child,
    base: String,
    /// `default.conf` from the gateway's template, with the listen address filled in and the
    /// upstreams' `server` lines still to fill.
    template: String,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Serves the gateway's routing on a port of its own, with each service's `upstreams`. A
    /// replica that refuses connections or times out is skipped for 2 s (nginx's passive
    /// health check); a request that reached a replica is never sent to another (the
    /// template's `proxy_next_upstream error timeout`, which nginx applies to POST only before
    /// anything was sent).
    async fn start(upstreams: &HashMap<&str, Vec<String>>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/gateway/default.conf.template");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let template = std::fs::read_to_string(template)
            .unwrap()
            .replace("${GATEWAY_LISTEN}", &format!("127.0.0.1:{port}"));
        let path = dir.path();
        std::fs::create_dir_all(path.join("logs")).unwrap();
        std::fs::create_dir_all(path.join("tmp")).unwrap();
        // Workers of a root master run as nobody.
        let user = if Command::new("id").arg("-u").output().unwrap().stdout == b"0\n" {
            std::os::unix::fs::chown(path.join("tmp"), Some(65534), Some(65534)).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
            "user nobody nogroup;"
        } else {
            ""
        };
        let d = path.display();
        std::fs::write(
            path.join("nginx.conf"),
            format!(
                "{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format sent '$msec $request_time $upstream_addr';
    access_log {d}/logs/access.log sent;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/default.conf;
}}"
            ),
        )
        .unwrap();
        std::fs::write(
            path.join("default.conf"),
            with_upstreams(&template, upstreams),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
            .args(["-e", &format!("{d}/logs/error.log")])
            // Its workers must not hold the test's output open after it.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (scripts/test installs Debian's nginx-light)");
        let nginx = Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
            template,
            dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let health = format!("{}/gateway/health", nginx.base);
            if client.get(health).send().await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nginx did not answer: {}", nginx.error_log());
    }

    /// Sends requests to `upstreams` from now on: the new configuration, and a reload (SIGHUP),
    /// as an Ingress controller does when a Service's ready endpoints change. Requests under
    /// way finish where they are.
    fn set_upstreams(&self, upstreams: &HashMap<&str, Vec<String>>) {
        let conf = with_upstreams(&self.template, upstreams);
        std::fs::write(self.dir.path().join("default.conf"), conf).unwrap();
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Each request the access log has: when it was sent upstream (Unix seconds) and where.
    fn sent(&self) -> Vec<(f64, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap();
        log.lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let done: f64 = fields.next()?.parse().ok()?;
                let took: f64 = fields.next()?.parse().ok()?;
                // Several addresses (`a, b`) when nginx tried more than one: the last answered.
                let upstream = fields.next_back()?.to_owned();
                Some((done - took, upstream))
            })
            .collect()
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

/// The gateway's `template` with `upstreams` as each service's servers.
fn with_upstreams(template: &str, upstreams: &HashMap<&str, Vec<String>>) -> String {
    let servers = |role: &str| -> String {
        upstreams[role]
            .iter()
            .map(|addr| format!("server {addr} max_fails=1 fail_timeout=2s;"))
            .collect::<Vec<_>>()
            .join("\n    ")
    };
    let mut conf = template.to_owned();
    for (variable, role) in [
        ("${EVENTS_UPSTREAM}", "events"),
        ("${BOOKINGS_UPSTREAM}", "bookings"),
        ("${USERS_UPSTREAM}", "users"),
        // No web role here: the UI's path goes to an events replica, which has none.
        ("${WEB_UPSTREAM}", "events"),
    ] {
        conf = conf.replace(&format!("server {variable};"), &servers(role));
    }
    conf
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers and then itself (SIGKILL would leave the workers).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// One replica: its process, its data folder, and what it was started with, so that it can be
/// started again on the same port.
struct Replica {
    role: &'static str,
    server: TestServer,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Replica {
    async fn start(role: &'static str, shared: &[(String, String)]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let env = Self::env(role, shared);
        let server = start(dir.path(), &env).await;
        Self::started(role, server, dir, env)
    }

    /// Starts on `host`, listening on its front address.
    async fn start_on(
        role: &'static str,
        shared: &[(String, String)],
        host: &hosts::Host,
    ) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Self::env(role, shared);
        for listen in [
            "MYEVENTS_LISTEN",
            "MYEVENTS_METRICS_LISTEN",
            "MYEVENTS_GRPC_LISTEN",
        ] {
            env.push((listen.into(), format!("{}:0", host.front)));
        }
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = TestServer::start_in_netns(dir.path(), &vars, &host.netns).await;
        Self::started(role, server, dir, env)
    }

    fn env(role: &str, shared: &[(String, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = shared.to_vec();
        env.push(("MYEVENTS_ROLES".into(), role.into()));
        env.push((SECRET.0.into(), SECRET.1.into()));
        env
    }

    fn started(
        role: &'static str,
        server: TestServer,
        dir: tempfile::TempDir,
        env: Vec<(String, String)>,
    ) -> Replica {
        let mut replica = Replica {
            role,
            server,
            dir,
            env,
        };
        // Started again, it listens where nginx expects it.
        let addr = replica.addr();
        replica.env.push(("MYEVENTS_LISTEN".into(), addr));
        replica
    }

    /// Where its HTTP API listens: `host:port`.
    fn addr(&self) -> String {
        self.server.url("").trim_start_matches("http://").to_owned()
    }

    async fn restart(&mut self) {
        self.server = start(self.dir.path(), &self.env).await;
    }
}

async fn start(dir: &Path, env: &[(String, String)]) -> TestServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestServer::start_in(dir, &env).await
}

/// Each service's replicas' addresses.
fn upstreams(replicas: &[Replica]) -> HashMap<&'static str, Vec<String>> {
    ROLES
        .iter()
        .map(|role| {
            let addrs = replicas
                .iter()
                .filter(|r| r.role == *role)
                .map(Replica::addr)
                .collect();
            (*role, addrs)
        })
        .collect()
}

/// What the sale's clients saw.
#[derive(Default)]
struct Outcomes {
    /// (booking id, event id) of every 201.
    confirmed: Vec<(String, String)>,
    sold_out: usize,
    /// Requests given up after their retries (every replica of the service was away).
    given_up: usize,
    unexpected: Vec<String>,
}

/// One client: books a seat at a time, on `events` in turn, until `stop`. Each booking has an
/// idempotency key, and an answer that says the request may not have been served (a gateway
/// error, a 503, a broken connection) is retried with the same key: a retried booking is booked
/// once.
async fn client(
    base: String,
    events: Vec<String>,
    n: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Outcomes>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let event = &events[i % events.len()];
        i += 1;
        let key = uuid::Uuid::now_v7().to_string();
        let mut answered = None;
        for _ in 0..40 {
            let sent = http
                .post(format!("{base}/events/{event}/bookings"))
                .header("Idempotency-Key", &key)
                .json(&json!({"seats": 1, "email": format!("client{n}-{i}@example.com")}))
                .send()
                .await;
            match sent {
                Ok(r) if ![502, 503, 504].contains(&r.status().as_u16()) => {
                    answered = Some((r.status(), r.json::<Value>().await.unwrap_or_default()));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut seen = seen.lock().unwrap();
        match answered {
            Some((StatusCode::CREATED, booking)) => seen
                .confirmed
                .push((booking["ID"].as_str().unwrap().to_owned(), event.clone())),
            Some((StatusCode::CONFLICT, _)) => seen.sold_out += 1,
            Some((status, answer)) => seen.unexpected.push(format!("{status}: {answer}")),
            None => seen.given_up += 1,
        }
    }
}

/// The sale's clients: 16, half of them on the hot event (`events[0]`), until `stop`.
fn start_sale(
    base: &str,
    events: &[String],
    stop: &Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<Mutex<Outcomes>>) {
    let seen = Arc::new(Mutex::new(Outcomes::default()));
    let clients = (0..16)
        .map(|n| {
            let mine = if n % 2 == 0 {
                vec![events[0].clone()]
            } else {
                events[1..].to_vec()
            };
            tokio::spawn(client(base.to_owned(), mine, n, stop.clone(), seen.clone()))
        })
        .collect();
    (clients, seen)
}

/// The organiser's token and events: one hot (`HOT_SEATS`), three roomy, each bookable.
async fn organiser_and_events(base: &str) -> (String, Vec<String>) {
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"Email": crate::helpers::ADMIN_EMAIL, "Password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let status = login.status();
    let login = body(login).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let admin = login["Token"].as_str().unwrap().to_owned();
    let location = body(
        http.post(format!("{base}/locations"))
            .bearer_auth(&admin)
            .json(&json!({"Name": "Arena", "Address": "1 Main St", "Country": "NZ", "OpenTime": 9, "CloseTime": 23,
                   "Halls": [{"name": "Main", "location": "ground", "capacity": HOT_SEATS},
                             {"name": "Big", "location": "first", "capacity": 100000}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let location = location["ID"].as_str().unwrap().to_owned();
    let mut events = Vec::new();
    for (name, hall) in [("Hot", "Main"), ("A", "Big"), ("B", "Big"), ("C", "Big")] {
        events.push(bookable_event(base, &admin, &location, name, hall).await);
    }
    (admin, events)
}

/// Creates an event in `hall` of `location` and waits until the bookings service can book it
/// (up to a minute: a message held by a consumer that was cut off is handed on only after its
/// missed heartbeats, 20 s).
async fn bookable_event(base: &str, admin: &str, location: &str, name: &str, hall: &str) -> String {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/events"))
        .bearer_auth(admin)
        .json(
            &json!({"Name": name, "StartDate": 1_900_000_000, "EndDate": 1_900_007_200,
               "Location": {"ID": location}, "Hall": hall}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let event = body(r).await["ID"].as_str().unwrap().to_owned();
    within(Duration::from_secs(60), "the event is bookable", || {
        let url = format!("{base}/events/{event}/availability");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.map_err(|e| e.to_string())?;
            (r.status() == StatusCode::OK)
                .then_some(())
                .ok_or(r.status().to_string())
        }
    })
    .await;
    event
}

/// The mails the notifications replicas wrote, by file name: how many copies of each.
fn mails(replicas: &[&Replica]) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    for r in replicas {
        if let Ok(entries) = std::fs::read_dir(r.dir.path().join("mail")) {
            for e in entries.flatten() {
                *found
                    .entry(e.file_name().to_string_lossy().into_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    found
}

/// After the sale on `events` (the first one hot) through `base`: no event oversold, every
/// confirmed booking kept and no other, the events service's sales figures equal to the
/// bookings', every outbox drained, no consumer group behind, every confirmation mailed, and at
/// most `copies_allowed` mails sent twice.
async fn assert_promises_kept(
    base: &str,
    admin: &str,
    events: &[String],
    seen: &Outcomes,
    replicas: &[Replica],
    copies_allowed: usize,
) {
    assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
    assert_eq!(seen.given_up, 0, "a service had no replica to answer");
    assert!(seen.sold_out > 0, "the hot event sold out");
    eprintln!(
        "replicas: {} bookings confirmed, {} refused as sold out",
        seen.confirmed.len(),
        seen.sold_out
    );
    let http = reqwest::Client::new();

    // Every confirmed booking is there, and no event is oversold.
    let get = |path: String| {
        let http = http.clone();
        let admin = admin.to_owned();
        async move {
            let r = http.get(path).bearer_auth(admin).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let mut active: HashMap<String, i64> = HashMap::new();
    let mut kept = HashSet::new();
    for event in events {
        let list = get(format!("{base}/bookings?event={event}")).await;
        for b in list.as_array().unwrap() {
            if b["Status"] == "active" {
                *active.entry(event.clone()).or_default() += b["Seats"].as_i64().unwrap();
                kept.insert(b["ID"].as_str().unwrap().to_owned());
            }
        }
        let a = get(format!("{base}/events/{event}/availability")).await;
        let sold = active.get(event).copied().unwrap_or(0);
        assert_eq!(
            a["Capacity"].as_i64().unwrap() - sold,
            a["Available"].as_i64().unwrap()
        );
        assert!(a["Available"].as_i64().unwrap() >= 0, "{a}");
    }
    assert_eq!(
        active[&events[0]], HOT_SEATS,
        "the hot event sold out exactly"
    );
    for (id, _) in &seen.confirmed {
        assert!(kept.contains(id), "confirmed booking {id} is missing");
    }
    assert_eq!(
        kept.len(),
        seen.confirmed.len(),
        "no booking beyond the confirmed ones"
    );

    // The events service's figures agree; every outbox drains; no consumer is behind.
    for event in events {
        let sold = active.get(event).copied().unwrap_or(0);
        within(Duration::from_secs(60), "the sales figures agree", || {
            let get = get(format!("{base}/events/{event}/sales"));
            async move {
                let sales = get.await;
                (sales["SeatsSold"] == sold)
                    .then_some(())
                    .ok_or(format!("{sales} against {sold} seats booked"))
            }
        })
        .await;
    }
    for r in replicas {
        let service = r.role;
        within(
            Duration::from_secs(60),
            "every outbox is drained",
            || async {
                let backlog = r
                    .server
                    .metric(&format!("myevents_outbox_backlog{{service=\"{service}\"}}"))
                    .await;
                (backlog == 0.0)
                    .then_some(())
                    .ok_or(format!("{service}: {backlog}"))
            },
        )
        .await;
    }
    for (role, group) in [
        ("events", "events"),
        ("bookings", "booking"),
        ("notifications", "notifications"),
    ] {
        for r in replicas.iter().filter(|r| r.role == role) {
            within(
                Duration::from_secs(60),
                "no consumer group is behind",
                || async {
                    let lag = r
                        .server
                        .metric(&format!("myevents_consumer_lag{{consumer=\"{group}\"}}"))
                        .await;
                    (lag == 0.0).then_some(()).ok_or(format!("{group}: {lag}"))
                },
            )
            .await;
        }
    }

    // Every confirmation is mailed. A mail is sent again only if the replica that sent it was
    // killed before it recorded it (at most one chunk of 16); its claim runs out after a
    // minute, so this waits longer than that.
    let senders: Vec<&Replica> = replicas
        .iter()
        .filter(|r| r.role == "notifications")
        .collect();
    within(
        Duration::from_secs(100),
        "every confirmation is mailed",
        || {
            let found = mails(&senders);
            let missing: Vec<&String> = seen
                .confirmed
                .iter()
                .map(|(id, _)| id)
                .filter(|id| !found.contains_key(&format!("booked-{id}.eml")))
                .collect();
            async move {
                missing.is_empty().then_some(()).ok_or(format!(
                    "{} not mailed, e.g. {:?}",
                    missing.len(),
                    missing.first()
                ))
            }
        },
    )
    .await;
    let copies: usize = mails(&senders).values().map(|n| n - 1).sum();
    eprintln!("replicas: {copies} mails sent twice");
    assert!(copies <= copies_allowed, "{copies} mails sent twice");
}
