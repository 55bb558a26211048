use std::io::Write;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Ports, TestServer, assert_error, binary, body, eventually};

#[tokio::test]
async fn health_and_openapi_describe_every_route() {
    let s = TestServer::start().await;
    assert_eq!(
        body(s.get("/health/live", None).await).await,
        json!({"status": "ok"})
    );
    assert_eq!(
        body(s.get("/health/ready", None).await).await,
        json!({"ready": true})
    );
    let doc = body(s.get("/openapi.json", None).await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("/events", "get"),
        ("/events", "post"),
        ("/events/{id}", "get"),
        ("/events/{id}", "delete"),
        ("/events/id/{id}", "get"),
        ("/events/name/{name}", "get"),
        ("/events/{id}/sales", "get"),
        ("/sales", "get"),
        ("/locations", "get"),
        ("/locations", "post"),
        ("/locations/{id}", "get"),
        ("/events/{id}/bookings", "post"),
        ("/events/{id}/availability", "get"),
        ("/bookings", "get"),
        ("/bookings/{id}", "get"),
        ("/bookings/{id}", "delete"),
        ("/users", "post"),
        ("/auth/login", "post"),
        ("/users/me", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/openapi.json", "get"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    // Each create links to the reads of what it made: schemathesis' stateful phase
    // (scripts/api-fuzz.sh) follows these links.
    for (path, link, target) in [
        ("/locations", "GetLocation", "location"),
        ("/events", "GetEvent", "event"),
        ("/events/{id}/bookings", "GetBooking", "show"),
        ("/users", "SignIn", "login"),
    ] {
        let links = &doc["paths"][path]["post"]["responses"]["201"]["links"];
        assert_eq!(links[link]["operationId"], target, "{path}: {links}");
    }
    let create_event = &doc["paths"]["/events"]["post"];
    assert_eq!(create_event["security"], json!([{"bearer": []}]));
    assert_eq!(
        create_event["responses"]["403"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert_eq!(
        doc["components"]["schemas"]["NewEvent"]["required"],
        json!(["Name", "StartDate", "EndDate", "Location"])
    );
    assert_error(s.get("/no/such/route", None).await, StatusCode::NOT_FOUND).await;
    let r = s.client.put(s.url("/events")).send().await.unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn metrics_count_seats_requests_and_events() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    s.book(&event, 3, "g@example.com").await;
    s.book(&event, 2, "h@example.com").await;
    let metrics_url = format!("{}/metrics", s.metrics);
    let client = s.client.clone();
    let expected =
        format!("myevents_bookings_count{{eventID=\"{event}\",eventName=\"Concert\"}} 5");
    eventually("the metrics show every family", || async {
        let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        text.contains(&expected)
            && text.contains("myevents_seats_per_booking_count 2")
            && text.contains("myevents_http_requests_total{method=\"POST\",route=\"/events/{id}/bookings\",status=\"201\"} 2")
            && text.contains("myevents_http_request_duration_seconds_bucket")
            && text.contains("myevents_events_published_total{type=\"eventBooked\"} 2")
            && text.contains("myevents_events_applied_total{consumer=\"events\",outcome=\"applied\",type=\"eventBooked\"} 2")
            && text.contains("myevents_outbox_backlog{service=\"bookings\"}")
    })
    .await;
}

#[tokio::test]
async fn cors_allows_any_origin_by_default_and_an_allow_list_when_configured() {
    let s = TestServer::start().await;
    let preflight = |s: &TestServer, origin: &str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/events"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let r = preflight(&s, "https://shop.example").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let dir = tempfile::tempdir().unwrap();
    let narrow = TestServer::start_in(
        dir.path(),
        &[(
            "MYEVENTS_CORS_ALLOW_ORIGINS",
            "https://www.myevents.example",
        )],
    )
    .await;
    let allowed = preflight(&narrow, "https://www.myevents.example")
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://www.myevents.example"
    );
    let refused = preflight(&narrow, "https://evil.example").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let huge = json!({"Name": "x".repeat(100 * 1024)});
    assert_error(
        s.post("/locations", Some(&admin), huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
}

#[tokio::test]
async fn a_booking_is_carried_out_when_its_client_hangs_up() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let event = s.bookable_event(&admin, 10).await;
    let body = json!({"seats": 4, "email": "leaver@example.com"}).to_string();
    let request = format!(
        "POST /events/{event}/bookings HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = s.base.trim_start_matches("http://").to_owned();
    // Send the whole request and hang up at once, as the reference UI does when it reloads.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    drop(stream);
    eventually("the booking was made", || async {
        s.available(&event).await == 6
    })
    .await;
}

#[tokio::test]
async fn https_is_served_beside_http_with_a_generated_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["gen-cert", "--host", "localhost", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let s = TestServer::start_in(
        dir.path(),
        &[
            ("MYEVENTS_TLS_CERT", cert.to_str().unwrap()),
            ("MYEVENTS_TLS_KEY", key.to_str().unwrap()),
            ("MYEVENTS_TLS_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    let tls = s.https.as_deref().expect("the HTTPS address");
    let tls_port = tls.rsplit(':').next().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{tls_port}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()
            .get("strict-transport-security")
            .is_some_and(|v| v.to_str().unwrap().starts_with("max-age=")),
        "HSTS over HTTPS"
    );
    let plain = s.get("/health/live", None).await;
    assert_eq!(plain.status(), StatusCode::OK, "HTTP still served");
    assert!(
        plain.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP, where it means nothing"
    );
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(binary())
        .env("MYEVENTS_LISTEN", "127.0.0.1:0")
        // Any free port: several servers run side by side.
        .env("MYEVENTS_GRPC_LISTEN", "127.0.0.1:0")
        .env("MYEVENTS_METRICS_LISTEN", "127.0.0.1:0")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_lists_the_commands() {
    let (ok, text) = run(&["--help"], &[]);
    assert!(ok);
    for command in ["serve", "gen-cert", "admin", "migrate"] {
        assert!(text.contains(command), "{command} in {text}");
    }
    let (ok, text) = run(&["serve", "--help"], &[]);
    assert!(
        ok && text.contains("--role") && text.contains("--listen"),
        "{text}"
    );
}

#[test]
fn bad_configuration_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myevents.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nmetrics_listen = = 1\n").unwrap();
    let (ok, text) = run(&["--config", file.to_str().unwrap(), "serve"], &[]);
    assert!(!ok);
    assert!(
        text.contains("myevents.toml") && text.contains("line 2"),
        "{text}"
    );

    let (ok, text) = run(&["serve"], &[("MYEVENTS_MAX_SEATS_PER_BOOKING", "many")]);
    assert!(
        !ok && text.contains("MYEVENTS_MAX_SEATS_PER_BOOKING"),
        "{text}"
    );
    let (ok, text) = run(&["serve", "--role", "events,tickets"], &[]);
    assert!(!ok && text.contains("tickets"), "{text}");
    // A broker this build does not know, or the reference's Kafka variable naming no broker,
    // is refused with the forms that work.
    let (ok, text) = run(
        &["serve"],
        &[("MYEVENTS_BROKER_URL", "nats://127.0.0.1:4222")],
    );
    assert!(
        !ok && text.contains("kafka://") && text.contains("sqs://"),
        "{text}"
    );
    let (ok, text) = run(&["serve"], &[("KAFKA_BROKERS", " ")]);
    assert!(!ok && text.contains("names no Kafka broker"), "{text}");
    // A mistyped URL is named without its password.
    let (ok, text) = run(
        &["serve"],
        &[("MYEVENTS_BROKER_URL", "ampq://me:s3cret@127.0.0.1/%2f")],
    );
    assert!(
        !ok && text.contains("ampq://me:***@127.0.0.1") && !text.contains("s3cret"),
        "{text}"
    );
    // The placeholders of the deployment files (deploy/k8s) are refused, not used.
    let data = dir.path().to_str().unwrap();
    let (ok, text) = run(
        &["serve"],
        &[
            ("MYEVENTS_DATA_DIR", data),
            (
                "MYEVENTS_JWT_SECRET",
                "replace-me-with-32-random-characters",
            ),
        ],
    );
    assert!(
        !ok && text.contains("auth.jwt_secret is still the placeholder"),
        "{text}"
    );
    let (ok, text) = run(
        &["serve"],
        &[
            ("MYEVENTS_DATA_DIR", data),
            ("MYEVENTS_ADMIN_EMAIL", "admin@example.com"),
            ("MYEVENTS_ADMIN_PASSWORD", "replace-me-admin-password"),
        ],
    );
    assert!(
        !ok && text.contains("auth.admin_password is still the placeholder"),
        "{text}"
    );
    // Without the sqs feature the URL is refused before it is read (scripts/lean-check.sh).
    #[cfg(feature = "sqs")]
    {
        let (ok, text) = run(
            &["serve"],
            &[("MYEVENTS_BROKER_URL", "sqs://127.0.0.1:5000?zone=x")],
        );
        assert!(
            !ok && text.contains("sqs://127.0.0.1:5000?zone=x"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_config_file_sets_what_it_names_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myevents.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.2:0\"\n[bookings]\nmax_seats_per_booking = 4\n",
    )
    .unwrap();
    let s = TestServer::start_in(dir.path(), &[]).await;
    drop(s);
    let ports_file = dir.path().join("flag.ports.json");
    let mut child = Command::new(binary())
        .args([
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        // Any free port: several servers run side by side.
        .env("MYEVENTS_GRPC_LISTEN", "127.0.0.1:0")
        .env("MYEVENTS_METRICS_LISTEN", "127.0.0.1:0")
        .env("MYEVENTS_PORTS_FILE", &ports_file)
        .env("MYEVENTS_DATA_DIR", dir.path())
        .env("MYEVENTS_ADMIN_EMAIL", crate::helpers::ADMIN_EMAIL)
        .env("MYEVENTS_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .spawn()
        .unwrap();
    let ports = Ports::wait(&mut child, &ports_file)
        .await
        .expect("the server listens");
    assert!(
        ports.http.starts_with("127.0.0.1:"),
        "the flag's address, not the file's: {ports:?}"
    );
    let client = reqwest::Client::new();
    let base = format!("http://{}", ports.http);
    eventually("the flag's port answers", || async {
        client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok()
    })
    .await;
    let token = body(client.post(format!("{base}/auth/login"))
        .json(&json!({"Email": crate::helpers::ADMIN_EMAIL, "Password": crate::helpers::ADMIN_PASSWORD}))
        .send().await.unwrap()).await["Token"].as_str().unwrap().to_owned();
    let location = body(
        client
            .post(format!("{base}/locations"))
            .bearer_auth(&token)
            .json(&json!({"Name": "L", "Halls": [{"name": "A", "capacity": 10}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let event = body(client.post(format!("{base}/events")).bearer_auth(&token)
        .json(&json!({"Name": "E", "StartDate": 1, "EndDate": 2, "Location": {"ID": location["ID"]}}))
        .send().await.unwrap()).await;
    let id = event["ID"].as_str().unwrap();
    eventually("bookable", || async {
        client
            .get(format!("{base}/events/{id}/availability"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
    })
    .await;
    let availability = body(
        client
            .get(format!("{base}/events/{id}/availability"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(availability["MaxSeatsPerBooking"], 4, "from the file");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn admin_create_on_the_command_line_makes_an_organiser() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(
        &[
            "admin",
            "create",
            "--email",
            "boss@example.com",
            "--password",
            "boss-password",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{text}");
    let s = TestServer::start_in(dir.path(), &[]).await;
    let token = s.login("boss@example.com", "boss-password").await;
    let me = body(s.get("/users/me", Some(&token)).await).await;
    assert_eq!(me["Role"], "admin");
    let (ok, text) = run(
        &[
            "admin",
            "create",
            "--email",
            "x@example.com",
            "--password",
            "short",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && text.contains("Password"), "{text}");
}

#[tokio::test]
async fn a_role_subset_serves_only_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[("MYEVENTS_ROLES", "users,events")]).await;
    let admin = s.admin_token().await;
    s.create_location(&admin, 10).await;
    assert_error(
        s.book("any", 1, "g@example.com").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let doc = body(s.get("/openapi.json", None).await).await;
    assert!(doc["paths"]["/bookings"].is_null());
    assert!(doc["paths"]["/events"].is_object());
}

#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn a_service_starts_without_its_broker_and_says_why_it_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    // The reference's variable; nothing listens on port 1.
    let env = [("AMQP_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/%2f")];
    let s = TestServer::spawn_in(dir.path(), &env).await;
    s.wait_live().await;
    let answer = assert_error(
        s.get("/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        answer["error"].as_str().unwrap().contains("RabbitMQ"),
        "{answer}"
    );
}
