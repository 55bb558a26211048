use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "organiser-password";

/// A `myevents serve` process on ports the system chose (port 0), killed when dropped.
pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub metrics: String,
    /// The gRPC Notificator's `host:port`, in a process that runs the notifications service.
    pub grpc: Option<String>,
    /// The HTTPS `host:port`, when TLS is configured.
    pub https: Option<String>,
    pub data_dir: PathBuf,
    pub client: Client,
    // Keeps the data folder alive as long as the server; `None` when the caller owns it.
    _dir: Option<tempfile::TempDir>,
}

/// A port free now, for a server of another kind that must be told its port before it starts
/// (and so cannot report one it chose): another process may take it before that server binds
/// it. A MyEvents server binds port 0 and reports its ports instead (see [`Ports`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The RabbitMQ the broker tests use: `MYEVENTS_TEST_AMQP_URL`, or the local default.
#[cfg(feature = "rabbitmq")]
pub fn amqp_url() -> String {
    std::env::var("MYEVENTS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The Kafka the broker tests use, as a broker URL: `MYEVENTS_TEST_KAFKA_BROKERS`, or the local
/// default.
#[cfg(feature = "kafka")]
pub fn kafka_url() -> String {
    let brokers = std::env::var("MYEVENTS_TEST_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    format!("kafka://{brokers}")
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_myevents")
}

/// The addresses a `myevents serve` process listens on, from the `ports_file`
/// (`MYEVENTS_PORTS_FILE`) it writes once every listener is bound.
#[derive(Debug, serde::Deserialize)]
pub struct Ports {
    pub http: String,
    pub metrics: String,
    pub https: Option<String>,
    pub grpc: Option<String>,
}

impl Ports {
    /// Waits up to 60 s (a loaded 2-core CI machine starts many servers at once) until `child`
    /// has written `file`; `None` if it ended first (a start that fails on purpose). The
    /// server writes the file whole or not at all.
    pub async fn wait(child: &mut Child, file: &Path) -> Option<Ports> {
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(file) {
                let ports = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}: {text:?}", file.display()));
                return Some(ports);
            }
            if child.try_wait().expect("server exit status").is_some() {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server wrote no {} within 60 s",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Numbers the servers of this test process: servers that share a data folder (several
/// services, or a restart) each keep their own log and ports file there.
static SERVERS: AtomicUsize = AtomicUsize::new(0);

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path(), &[]).await;
        server._dir = Some(dir);
        server
    }

    /// Starts on `data_dir` (kept by the caller, so a restart finds the same data).
    pub async fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let server = Self::spawn_in(data_dir, env).await;
        server.wait_for("/health/ready").await;
        server
    }

    /// Starts on `data_dir` and waits only until it is live: for a server whose broker or
    /// database is down on purpose.
    pub async fn start_live_in(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let server = Self::spawn_in(data_dir, env).await;
        server.wait_for("/health/live").await;
        server
    }

    pub async fn wait_live(&self) {
        self.wait_for("/health/live").await;
    }

    /// Whether `/health/ready` answers 200 now.
    pub async fn is_ready(&self) -> bool {
        self.answers_ok("/health/ready").await
    }

    async fn answers_ok(&self, path: &str) -> bool {
        self.client
            .get(self.url(path))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }

    /// Starts and waits only until its ports are bound, not until it is ready (a test may keep
    /// a dependency down on purpose). A server that ends before it listens (a start refused on
    /// purpose) has no address: see [`TestServer::exit_within`] and [`TestServer::log`].
    pub async fn spawn_in(data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        Self::spawn(Command::new(binary()), data_dir, env).await
    }

    /// Starts in the network namespace `netns` (`ip netns exec`, which becomes the server's
    /// process) and waits until it is ready. `env` must say where it listens
    /// (`MYEVENTS_LISTEN`…): its own loopback is not the test's.
    pub async fn start_in_netns(data_dir: &Path, env: &[(&str, &str)], netns: &str) -> TestServer {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, binary()]);
        let server = Self::spawn(command, data_dir, env).await;
        server.wait_for("/health/ready").await;
        server
    }

    /// Runs `command` (the binary, or something that becomes it) with `serve`.
    async fn spawn(mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> TestServer {
        // reqwest is built without a TLS crypto provider of its own; ring serves the HTTPS test.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let log =
            std::fs::File::create(data_dir.join(format!("server-{n}.log"))).expect("log file");
        let ports_file = data_dir.join(format!("server-{n}.ports.json"));
        command
            .arg("serve")
            // Port 0: the system picks a free port, which the server reports in `ports_file`.
            .env("MYEVENTS_LISTEN", "127.0.0.1:0")
            .env("MYEVENTS_GRPC_LISTEN", "127.0.0.1:0")
            .env("MYEVENTS_METRICS_LISTEN", "127.0.0.1:0")
            .env("MYEVENTS_PORTS_FILE", &ports_file)
            .env("MYEVENTS_DATA_DIR", data_dir)
            .env("MYEVENTS_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("MYEVENTS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("MYEVENTS_WEB_DIR", data_dir.join("no-web"))
            .env("RUST_LOG", "info")
            // The log lines (stdout) and anything on stderr, for tests that read them.
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start myevents");
        let ports = Ports::wait(&mut child, &ports_file).await;
        // A server that ended before listening is reached nowhere: its URLs are relative, and
        // every request to it fails.
        let http = |addr: &str| format!("http://{addr}");
        TestServer {
            child: Some(child),
            base: ports.as_ref().map(|p| http(&p.http)).unwrap_or_default(),
            metrics: ports.as_ref().map(|p| http(&p.metrics)).unwrap_or_default(),
            grpc: ports.as_ref().and_then(|p| p.grpc.clone()),
            https: ports.and_then(|p| p.https),
            data_dir: data_dir.to_owned(),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            _dir: None,
        }
    }

    /// Waits up to 60 s (a loaded 2-core CI machine starts many servers at once) until `path`
    /// answers 200.
    async fn wait_for(&self, path: &str) {
        let started = Instant::now();
        while !self.answers_ok(path).await {
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "{path} did not answer 200; the server's log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.data_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".log") {
                    out += &std::fs::read_to_string(e.path()).unwrap_or_default();
                }
            }
        }
        out
    }

    /// The value of one series of the server's `/metrics`, written as Prometheus writes it
    /// (`name{label="value",…}`, labels in the order of their names); 0 while it is absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("the metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to end by itself.
    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.wait_exit()
    }

    /// Waits up to `limit` for the process to end by itself; its exit status, or `None` if it
    /// is still running (it is then killed).
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            let child = self.child.as_mut().expect("running server");
            if let Some(status) = child.try_wait().expect("server exit status") {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill();
        None
    }

    /// Waits for the process to end by itself (after a signal sent elsewhere).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running server");
        child.wait().expect("server exit status")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().await.expect("POST")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.delete(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().await.expect("DELETE")
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .post(
                "/auth/login",
                None,
                json!({"Email": email, "Password": password}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login of {email}");
        body(r).await["Token"].as_str().expect("Token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Registers a customer and signs them in.
    pub async fn customer(&self, email: &str) -> String {
        let r = self
            .post(
                "/users",
                None,
                json!({"Email": email, "Password": "customer-password", "Name": "C"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {email}");
        self.login(email, "customer-password").await
    }

    pub async fn create_location(&self, token: &str, capacity: u32) -> Value {
        let r = self
            .post(
                "/locations",
                Some(token),
                json!({"Name": "Town Hall", "Address": "1 Main St", "Country": "NZ", "OpenTime": 9, "CloseTime": 23,
                       "Halls": [{"name": "Main", "location": "ground floor", "capacity": capacity},
                                 {"name": "Studio", "location": "first floor", "capacity": 10}]}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        body(r).await
    }

    /// An event in the Main hall of a new location, bookable once this returns.
    pub async fn bookable_event(&self, token: &str, capacity: u32) -> String {
        let location = self.create_location(token, capacity).await;
        let r = self
            .post(
                "/events",
                Some(token),
                json!({"Name": "Concert", "StartDate": 1_900_000_000, "EndDate": 1_900_007_200,
                       "Location": {"ID": location["ID"]}, "Hall": "Main"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let id = body(r).await["ID"].as_str().expect("event ID").to_owned();
        self.wait_bookable(&id).await;
        id
    }

    /// Waits until the bookings service has learned of the event.
    pub async fn wait_bookable(&self, event_id: &str) {
        let path = format!("/events/{event_id}/availability");
        eventually("the event is bookable", || async {
            self.get(&path, None).await.status() == StatusCode::OK
        })
        .await;
    }

    pub async fn available(&self, event_id: &str) -> i64 {
        let r = self
            .get(&format!("/events/{event_id}/availability"), None)
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        body(r).await["Available"].as_i64().expect("Available")
    }

    pub async fn book(&self, event_id: &str, seats: i64, email: &str) -> Response {
        self.post(
            &format!("/events/{event_id}/bookings"),
            None,
            json!({"seats": seats, "email": email}),
        )
        .await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn body(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
}

/// Asserts an error answer: the status, a JSON `error` text, and the request's ID as
/// `RequestID`, the same as in its `X-Request-Id` header.
pub async fn assert_error(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status");
    let header = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json = body(response).await;
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error text in {json}"
    );
    assert!(header.is_some(), "X-Request-Id header with {json}");
    assert_eq!(json["RequestID"].as_str(), header.as_deref(), "{json}");
    json
}

/// Waits up to 15 s for `check` to hold.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let limit = Duration::from_secs(15);
    within(limit, &format!("timed out waiting until {what}"), || {
        let held = check();
        async move {
            if held.await {
                Ok(())
            } else {
                Err(String::new())
            }
        }
    })
    .await;
}

/// Waits up to `limit` for `check` to answer `Ok`; otherwise fails with `what` and the reason
/// `check` gave last.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if started.elapsed() > limit => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// Whether the notifications service on `data_dir`'s SQLite database has recorded the mail to
/// `recipient` as sent. Once it has, every mail that was due before it has been handed to the
/// transport and counted in `myevents_mails_total`: the sender takes due mails oldest first and
/// records a chunk only after counting it.
pub fn mail_recorded_sent(data_dir: &Path, recipient: &str) -> bool {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        data_dir.join("notifications.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return false;
    };
    db.query_row(
        "SELECT status = 'sent' FROM mails WHERE recipient = ?1",
        [recipient],
        |r| r.get(0),
    )
    .unwrap_or(false)
}

/// A server process of the test's own (moto, SecantusDB, aiosmtpd, etcd), killed when dropped.
pub struct OwnServer(Child);

impl OwnServer {
    /// Starts `command` with its output discarded; `missing` says what to install when it
    /// cannot start.
    pub fn spawn(command: &mut Command, missing: &str) -> OwnServer {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {missing}: {e}"));
        OwnServer(child)
    }

    /// Waits up to 60 s (a Python server takes a while to start) until `port` accepts
    /// connections.
    pub async fn listening_on(self, port: u16) -> OwnServer {
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "nothing listens on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Kafka broker (tansu, topics in memory) of a test's own, listening on and advertising
/// `addr` (`host:port`), killed when dropped.
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub struct OwnKafka(Child);

#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
impl OwnKafka {
    pub fn start(addr: &str) -> OwnKafka {
        let bin = std::env::var("MYEVENTS_TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
        let url = format!("tcp://{addr}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tansu ({bin}; scripts/test sets MYEVENTS_TANSU_BIN): {e}")
            });
        OwnKafka(child)
    }
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` for `found` to find something, asking every 50 ms.
pub async fn until_some<T>(limit: Duration, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
