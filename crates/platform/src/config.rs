//! Configuration (SPEC §7): defaults, then a TOML file, then environment variables, then flags
//! (the binary applies flags last). Every malformed input is an error that names where it came
//! from: the file and line, or the variable.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: String,
    /// Address of the Prometheus endpoint (`/metrics`).
    pub metrics_listen: String,
    /// Where `serve` writes the addresses it listens on, once bound (for a test or a script
    /// that starts it on port 0); unset: nowhere.
    pub ports_file: Option<PathBuf>,
    /// Where the embedded databases live.
    pub data_dir: PathBuf,
    /// Services this process runs: events, bookings, users, notifications (all by default).
    pub roles: Vec<String>,
    /// Built web UI to serve at `/`; `web/dist` when present.
    pub web_dir: Option<PathBuf>,
    /// The address people reach MyEvents at (`https://tickets.example`), for the links in
    /// answers and mails; `http://localhost:<listen port>` if unset.
    pub public_url: Option<String>,
    /// `text` or `json` logs.
    pub log_format: String,
    pub tls: Tls,
    pub cors: Cors,
    pub http: Http,
    pub auth: AuthSettings,
    pub bookings: Bookings,
    pub broker: Broker,
    pub storage: Storage,
    pub notifications: Notifications,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Address of the HTTPS API, served beside HTTP when `cert` and `key` are set.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cors {
    /// Origins allowed to call the API from a browser; `*` allows any (the API authenticates
    /// with bearer tokens, not cookies).
    pub allow_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Addresses of reverse proxies whose `X-Forwarded-For` names the client (sign-in limits
    /// count by client address). None by default: the header is then ignored, since any client
    /// can write it.
    pub trusted_proxies: Vec<String>,
    /// How long a client may take to send a request's line and headers (and how long an idle
    /// connection is kept): a client trickling bytes is cut off.
    pub header_timeout_secs: u64,
    /// How long a client may take to send a whole request body.
    pub body_timeout_secs: u64,
    /// Connections served at once (HTTP and HTTPS together); more are closed at once. Lowered
    /// on start to what the process's open-file limit allows, leaving room for databases,
    /// brokers and logs.
    pub max_connections: usize,
    /// Requests worked on at once; more wait for a slot (see `platform::admission`).
    pub max_in_flight: usize,
    /// Requests that may wait for a slot; more are answered 503 at once.
    pub max_waiting: usize,
    /// How long a request may wait for a slot after a quiet moment (a burst); while the process
    /// is overloaded (the queue stood longer than this, or a request was refused within it), a
    /// request waits only 5 ms. Then 503 with `Retry-After`.
    pub max_wait_ms: u64,
    /// How long a request may take before it is answered 503 with `Retry-After`: a database or
    /// broker cut off by the network stays silent, and a client should hear something before its
    /// load balancer gives up. The work goes on and either completes or fails; a booking retried
    /// with the same `Idempotency-Key` learns which. Health probes have no such deadline (their
    /// checks have their own).
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret shared by every service; generated into `data_dir/jwt-secret` when unset.
    /// New tokens are signed with it.
    pub jwt_secret: Option<String>,
    /// The secret before the last rotation: tokens it signed stay valid until they expire.
    pub jwt_previous_secret: Option<String>,
    /// The `iss` of the tokens issued, and the only one accepted.
    pub jwt_issuer: String,
    /// The `aud` of the tokens issued, and the only one accepted.
    pub jwt_audience: String,
    pub token_ttl_secs: u64,
    /// An admin created on start when no user has this e-mail yet.
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// Failed sign-ins for one account from one client address before further attempts from
    /// there wait (1 s, then twice as long after each further failure).
    pub max_failed_logins: u32,
    /// The same for one client address, whatever the accounts it tries.
    pub max_failed_logins_per_address: u32,
    /// The longest such wait.
    pub lockout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bookings {
    pub max_seats_per_booking: u32,
    /// Guest bookings one client address may make in an hour; 0 (the default) for no limit.
    pub guest_bookings_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Broker {
    /// `embedded` (a log in `data_dir/bus.db`), `embedded:PATH`, or `amqp://user:pass@host/vhost`.
    pub url: String,
    /// Prefix of the exchange and queue names on a shared broker (tests use one of their own).
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Used by every service without a URL of its own; `sqlite` means `data_dir/<service>.db`.
    pub url: String,
    pub events_url: Option<String>,
    pub bookings_url: Option<String>,
    pub users_url: Option<String>,
    pub notifications_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    /// Where mail goes: `file` (one `.eml` per mail in `data_dir/mail`), `file:DIR`,
    /// `smtp://[user:password@]host[:port][?tls=opportunistic|required]` (STARTTLS; without
    /// `tls` the connection is plain, credentials included), or `smtps://…` (TLS throughout).
    pub mail_url: String,
    /// The sender of every mail.
    pub from: String,
    /// Address of the gRPC Notificator. Loopback by default: `SendEmail` has no authentication,
    /// so opening it wider is a decision for the operator's network.
    pub grpc_listen: String,
    /// etcd endpoints (`http://host:2379`); empty: no registration.
    pub etcd_endpoints: Vec<String>,
    /// The address registered in etcd for others to call; the gRPC port on 127.0.0.1 if unset.
    pub advertise: Option<String>,
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            mail_url: "file".into(),
            from: "MyEvents <tickets@myevents.example>".into(),
            grpc_listen: "127.0.0.1:50051".into(),
            etcd_endpoints: Vec::new(),
            advertise: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8181".into(),
            metrics_listen: "0.0.0.0:9100".into(),
            ports_file: None,
            data_dir: PathBuf::from("./data"),
            roles: vec![
                "events".into(),
                "bookings".into(),
                "users".into(),
                "notifications".into(),
            ],
            web_dir: None,
            public_url: None,
            log_format: "text".into(),
            tls: Tls::default(),
            cors: Cors::default(),
            http: Http::default(),
            auth: AuthSettings::default(),
            bookings: Bookings::default(),
            broker: Broker::default(),
            storage: Storage::default(),
            notifications: Notifications::default(),
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            listen: "0.0.0.0:8443".into(),
        }
    }
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            allow_origins: vec!["*".into()],
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            shutdown_grace_secs: 30,
            trusted_proxies: Vec::new(),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 10_000,
            // A booking's work is mostly the store's: a few dozen at once keep the store busy
            // on a small machine, and the wait a burst may take keeps a flash sale's first
            // seconds served rather than refused.
            max_in_flight: 64,
            max_waiting: 1024,
            max_wait_ms: 100,
            request_timeout_secs: 10,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_previous_secret: None,
            jwt_issuer: "myevents".into(),
            jwt_audience: "myevents".into(),
            token_ttl_secs: 24 * 3600,
            admin_email: None,
            admin_password: None,
            max_failed_logins: 5,
            max_failed_logins_per_address: 50,
            lockout_secs: 15 * 60,
        }
    }
}

impl Default for Bookings {
    fn default() -> Self {
        Self {
            max_seats_per_booking: 10,
            guest_bookings_per_hour: 0,
        }
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            url: "embedded".into(),
            namespace: String::new(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            url: "sqlite".into(),
            events_url: None,
            bookings_url: None,
            users_url: None,
            notifications_url: None,
        }
    }
}

/// The environment variables read, in the order applied (later wins). The reference's names
/// come first so that a `MYEVENTS_` variable overrides them.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LISTEN_URL", "listen address (the reference's name)"),
    ("AMQP_BROKER_URL", "broker URL (the reference's name)"),
    (
        "KAFKA_BROKERS",
        "Kafka brokers, comma-separated (the reference's name)",
    ),
    (
        "MONGO_URL",
        "storage URL for every service (the reference's name)",
    ),
    ("MYEVENTS_LISTEN", "listen"),
    ("MYEVENTS_METRICS_LISTEN", "metrics_listen"),
    ("MYEVENTS_PORTS_FILE", "ports_file"),
    ("MYEVENTS_DATA_DIR", "data_dir"),
    ("MYEVENTS_ROLES", "roles, comma-separated"),
    ("MYEVENTS_WEB_DIR", "web_dir"),
    ("MYEVENTS_PUBLIC_URL", "public_url"),
    ("MYEVENTS_LOG_FORMAT", "log_format"),
    ("MYEVENTS_TLS_CERT", "tls.cert"),
    ("MYEVENTS_TLS_KEY", "tls.key"),
    ("MYEVENTS_TLS_LISTEN", "tls.listen"),
    (
        "MYEVENTS_CORS_ALLOW_ORIGINS",
        "cors.allow_origins, comma-separated",
    ),
    ("MYEVENTS_BODY_LIMIT_BYTES", "http.body_limit_bytes"),
    ("MYEVENTS_SHUTDOWN_GRACE_SECS", "http.shutdown_grace_secs"),
    (
        "MYEVENTS_TRUSTED_PROXIES",
        "http.trusted_proxies, comma-separated",
    ),
    ("MYEVENTS_HEADER_TIMEOUT_SECS", "http.header_timeout_secs"),
    ("MYEVENTS_BODY_TIMEOUT_SECS", "http.body_timeout_secs"),
    ("MYEVENTS_MAX_CONNECTIONS", "http.max_connections"),
    ("MYEVENTS_MAX_IN_FLIGHT", "http.max_in_flight"),
    ("MYEVENTS_MAX_WAITING", "http.max_waiting"),
    ("MYEVENTS_MAX_WAIT_MS", "http.max_wait_ms"),
    ("MYEVENTS_REQUEST_TIMEOUT_SECS", "http.request_timeout_secs"),
    ("MYEVENTS_JWT_SECRET", "auth.jwt_secret"),
    ("MYEVENTS_JWT_PREVIOUS_SECRET", "auth.jwt_previous_secret"),
    ("MYEVENTS_JWT_ISSUER", "auth.jwt_issuer"),
    ("MYEVENTS_JWT_AUDIENCE", "auth.jwt_audience"),
    ("MYEVENTS_TOKEN_TTL_SECS", "auth.token_ttl_secs"),
    ("MYEVENTS_ADMIN_EMAIL", "auth.admin_email"),
    ("MYEVENTS_ADMIN_PASSWORD", "auth.admin_password"),
    ("MYEVENTS_MAX_FAILED_LOGINS", "auth.max_failed_logins"),
    (
        "MYEVENTS_MAX_FAILED_LOGINS_PER_ADDRESS",
        "auth.max_failed_logins_per_address",
    ),
    ("MYEVENTS_LOCKOUT_SECS", "auth.lockout_secs"),
    (
        "MYEVENTS_MAX_SEATS_PER_BOOKING",
        "bookings.max_seats_per_booking",
    ),
    (
        "MYEVENTS_GUEST_BOOKINGS_PER_HOUR",
        "bookings.guest_bookings_per_hour",
    ),
    ("MYEVENTS_BROKER_URL", "broker.url"),
    ("MYEVENTS_BROKER_NAMESPACE", "broker.namespace"),
    ("MYEVENTS_STORAGE_URL", "storage.url"),
    ("MYEVENTS_EVENTS_STORAGE_URL", "storage.events_url"),
    ("MYEVENTS_BOOKINGS_STORAGE_URL", "storage.bookings_url"),
    ("MYEVENTS_USERS_STORAGE_URL", "storage.users_url"),
    (
        "MYEVENTS_NOTIFICATIONS_STORAGE_URL",
        "storage.notifications_url",
    ),
    ("MYEVENTS_MAIL_URL", "notifications.mail_url"),
    ("MYEVENTS_MAIL_FROM", "notifications.from"),
    ("MYEVENTS_GRPC_LISTEN", "notifications.grpc_listen"),
    (
        "MYEVENTS_ETCD_ENDPOINTS",
        "notifications.etcd_endpoints, comma-separated",
    ),
    ("MYEVENTS_GRPC_ADVERTISE", "notifications.advertise"),
];

impl Config {
    /// Defaults, then `file` (a missing file is fine unless it was asked for by name).
    pub fn from_file(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Applies the variables of [`ENV_VARS`] that `lookup` finds.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for &(var, _) in ENV_VARS {
            if let Some(value) = lookup(var) {
                self.set_from_env(var, value)?;
            }
        }
        Ok(())
    }

    fn set_from_env(&mut self, var: &'static str, value: String) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Env {
            var,
            value: value.clone(),
            message,
        };
        let number = |v: &str| -> Result<u64, ConfigError> {
            v.trim()
                .parse::<u64>()
                .map_err(|e| bad(format!("expected a whole number: {e}")))
        };
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match var {
            "LISTEN_URL" | "MYEVENTS_LISTEN" => self.listen = value.clone(),
            "AMQP_BROKER_URL" => self.broker.url = value.clone(),
            "KAFKA_BROKERS" => self.broker.url = format!("kafka://{}", value.trim()),
            "MONGO_URL" | "MYEVENTS_STORAGE_URL" => self.storage.url = value.clone(),
            "MYEVENTS_METRICS_LISTEN" => self.metrics_listen = value.clone(),
            "MYEVENTS_PORTS_FILE" => self.ports_file = Some(PathBuf::from(&value)),
            "MYEVENTS_DATA_DIR" => self.data_dir = PathBuf::from(&value),
            "MYEVENTS_ROLES" => self.roles = list(&value),
            "MYEVENTS_WEB_DIR" => self.web_dir = Some(PathBuf::from(&value)),
            "MYEVENTS_PUBLIC_URL" => self.public_url = Some(value.clone()),
            "MYEVENTS_LOG_FORMAT" => self.log_format = value.clone(),
            "MYEVENTS_TLS_CERT" => self.tls.cert = Some(PathBuf::from(&value)),
            "MYEVENTS_TLS_KEY" => self.tls.key = Some(PathBuf::from(&value)),
            "MYEVENTS_TLS_LISTEN" => self.tls.listen = value.clone(),
            "MYEVENTS_CORS_ALLOW_ORIGINS" => self.cors.allow_origins = list(&value),
            "MYEVENTS_BODY_LIMIT_BYTES" => self.http.body_limit_bytes = number(&value)? as usize,
            "MYEVENTS_SHUTDOWN_GRACE_SECS" => self.http.shutdown_grace_secs = number(&value)?,
            "MYEVENTS_TRUSTED_PROXIES" => self.http.trusted_proxies = list(&value),
            "MYEVENTS_HEADER_TIMEOUT_SECS" => self.http.header_timeout_secs = number(&value)?,
            "MYEVENTS_BODY_TIMEOUT_SECS" => self.http.body_timeout_secs = number(&value)?,
            "MYEVENTS_MAX_CONNECTIONS" => self.http.max_connections = number(&value)? as usize,
            "MYEVENTS_MAX_IN_FLIGHT" => self.http.max_in_flight = number(&value)? as usize,
            "MYEVENTS_MAX_WAITING" => self.http.max_waiting = number(&value)? as usize,
            "MYEVENTS_MAX_WAIT_MS" => self.http.max_wait_ms = number(&value)?,
            "MYEVENTS_REQUEST_TIMEOUT_SECS" => self.http.request_timeout_secs = number(&value)?,
            "MYEVENTS_JWT_SECRET" => self.auth.jwt_secret = Some(value.clone()),
            "MYEVENTS_JWT_PREVIOUS_SECRET" => self.auth.jwt_previous_secret = Some(value.clone()),
            "MYEVENTS_JWT_ISSUER" => self.auth.jwt_issuer = value.clone(),
            "MYEVENTS_JWT_AUDIENCE" => self.auth.jwt_audience = value.clone(),
            "MYEVENTS_TOKEN_TTL_SECS" => self.auth.token_ttl_secs = number(&value)?,
            "MYEVENTS_ADMIN_EMAIL" => self.auth.admin_email = Some(value.clone()),
            "MYEVENTS_ADMIN_PASSWORD" => self.auth.admin_password = Some(value.clone()),
            "MYEVENTS_MAX_FAILED_LOGINS" => {
                self.auth.max_failed_logins =
                    u32::try_from(number(&value)?).map_err(|_| bad("too large".into()))?
            }
            "MYEVENTS_MAX_FAILED_LOGINS_PER_ADDRESS" => {
                self.auth.max_failed_logins_per_address =
                    u32::try_from(number(&value)?).map_err(|_| bad("too large".into()))?
            }
            "MYEVENTS_LOCKOUT_SECS" => self.auth.lockout_secs = number(&value)?,
            "MYEVENTS_MAX_SEATS_PER_BOOKING" => {
                self.bookings.max_seats_per_booking =
                    u32::try_from(number(&value)?).map_err(|_| bad("too large".into()))?
            }
            "MYEVENTS_GUEST_BOOKINGS_PER_HOUR" => {
                self.bookings.guest_bookings_per_hour =
                    u32::try_from(number(&value)?).map_err(|_| bad("too large".into()))?
            }
            "MYEVENTS_BROKER_URL" => self.broker.url = value.clone(),
            "MYEVENTS_BROKER_NAMESPACE" => self.broker.namespace = value.clone(),
            "MYEVENTS_EVENTS_STORAGE_URL" => self.storage.events_url = Some(value.clone()),
            "MYEVENTS_BOOKINGS_STORAGE_URL" => self.storage.bookings_url = Some(value.clone()),
            "MYEVENTS_USERS_STORAGE_URL" => self.storage.users_url = Some(value.clone()),
            "MYEVENTS_NOTIFICATIONS_STORAGE_URL" => {
                self.storage.notifications_url = Some(value.clone())
            }
            "MYEVENTS_MAIL_URL" => self.notifications.mail_url = value.clone(),
            "MYEVENTS_MAIL_FROM" => self.notifications.from = value.clone(),
            "MYEVENTS_GRPC_LISTEN" => self.notifications.grpc_listen = value.clone(),
            "MYEVENTS_ETCD_ENDPOINTS" => self.notifications.etcd_endpoints = list(&value),
            "MYEVENTS_GRPC_ADVERTISE" => self.notifications.advertise = Some(value.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Checks what no single field can: run after every source is applied.
    /// [`Config::public_url`] as configured, or this process's own address on localhost.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let port = self.listen.rsplit(':').next().unwrap_or("8181");
                format!("http://localhost:{port}")
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "public_url {url:?} must start with http:// or https://"
            )));
        }
        if self.bookings.max_seats_per_booking == 0 {
            return Err(ConfigError::Invalid(
                "bookings.max_seats_per_booking must be at least 1".into(),
            ));
        }
        if self.http.body_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.body_limit_bytes must be at least 1024".into(),
            ));
        }
        if self.http.header_timeout_secs == 0
            || self.http.body_timeout_secs == 0
            || self.http.max_connections == 0
            || self.http.max_in_flight == 0
            || self.http.request_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "http.header_timeout_secs, http.body_timeout_secs, http.max_connections, \
                 http.max_in_flight and http.request_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if self.http.max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::Invalid(format!(
                "http.max_in_flight must be at most {}",
                tokio::sync::Semaphore::MAX_PERMITS
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key must be set together".into(),
            ));
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            )));
        }
        if let Some(bad) = self
            .http
            .trusted_proxies
            .iter()
            .find(|p| p.parse::<std::net::IpAddr>().is_err())
        {
            return Err(ConfigError::Invalid(format!(
                "http.trusted_proxies: {bad:?} is not an IP address"
            )));
        }
        if self.auth.jwt_issuer.is_empty() || self.auth.jwt_audience.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.jwt_issuer and auth.jwt_audience must not be empty".into(),
            ));
        }
        match (&self.auth.admin_email, &self.auth.admin_password) {
            (Some(_), None) | (None, Some(_)) => Err(ConfigError::Invalid(
                "auth.admin_email and auth.admin_password must be set together".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The storage URL of one service.
    pub fn storage_url(&self, service: &str) -> &str {
        let own = match service {
            "events" => &self.storage.events_url,
            "bookings" => &self.storage.bookings_url,
            "users" => &self.storage.users_url,
            "notifications" => &self.storage.notifications_url,
            _ => &None,
        };
        own.as_deref().unwrap_or(&self.storage.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_file_overrides_defaults_and_keeps_the_rest() {
        let c =
            Config::from_toml("listen = \"127.0.0.1:1\"\n[bookings]\nmax_seats_per_booking = 4\n")
                .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.bookings.max_seats_per_booking, 4);
        assert_eq!(c.metrics_listen, "0.0.0.0:9100");
    }

    #[test]
    fn a_malformed_file_names_the_line() {
        let err = Config::from_toml("listen = \"a\"\n\nmetrics_listen = = 3\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = Config::from_toml("lisen = \"a\"\n").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file_and_myevents_names_win_over_the_reference() {
        let vars: HashMap<&str, &str> = [
            ("LISTEN_URL", "0.0.0.0:1"),
            ("MYEVENTS_LISTEN", "0.0.0.0:2"),
            ("MYEVENTS_ROLES", "events, bookings"),
            ("KAFKA_BROKERS", "k1:9092,k2:9092"),
        ]
        .into();
        let mut c = Config::default();
        c.apply_env(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen, "0.0.0.0:2");
        assert_eq!(c.roles, ["events", "bookings"]);
        assert_eq!(c.broker.url, "kafka://k1:9092,k2:9092");
    }

    #[test]
    fn a_malformed_variable_is_named() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "MYEVENTS_MAX_SEATS_PER_BOOKING").then(|| "ten".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MYEVENTS_MAX_SEATS_PER_BOOKING"), "{err}");
    }

    #[test]
    fn trusted_proxies_must_be_addresses() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "MYEVENTS_TRUSTED_PROXIES").then(|| "10.0.0.1, ::1".to_owned()))
            .unwrap();
        assert_eq!(c.http.trusted_proxies, ["10.0.0.1", "::1"]);
        c.validate().unwrap();
        c.http.trusted_proxies.push("proxy.local".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("proxy.local")
        );
    }

    #[test]
    fn half_a_tls_pair_is_refused() {
        let mut c = Config::default();
        c.tls.cert = Some("c.pem".into());
        assert!(c.validate().is_err());
    }
}
