//! Prometheus metrics. Every crate registers its own metrics in the default registry; this module
//! holds the HTTP ones, what every process reports about itself (build, database pools), the
//! [`AgeGauge`] several crates use, and serves them all on the metrics port.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "myevents_http_requests_total",
        "HTTP requests answered, by method, route and status",
        &["method", "route", "status"]
    )
    .expect("metric names are static and valid")
});

static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "myevents_http_request_duration_seconds",
        "Time to answer an HTTP request, by method, route and status",
        &["method", "route", "status"],
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
        ]
    )
    .expect("metric names are static and valid")
});

/// Middleware: counts and times every request under its route template (`/events/{id}`), so the
/// number of label values stays bounded whatever ids clients send.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    count(&method, &route, response.status(), started);
    response
}

/// Counts and times one answer of `route`, begun at `started`.
pub fn count(method: &str, route: &str, status: StatusCode, started: Instant) {
    let status = status.as_u16().to_string();
    let labels = [method, route, status.as_str()];
    REQUESTS.with_label_values(&labels).inc();
    LATENCY
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
}

static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "myevents_build_info",
        "Always 1: the version of the running binary and the roles this process serves",
        &["version", "roles"]
    )
    .expect("metric names are static and valid")
});

/// Reports which build serves which `roles` (`bookings,events`), so that a dashboard can tell
/// the processes apart and see a rollout progress.
pub fn build_info(version: &str, roles: &str) {
    BUILD_INFO.with_label_values(&[version, roles]).set(1);
}

/// A gauge of how long something has been waiting, per label values: it keeps when the oldest
/// waiting thing began and computes the age at each scrape. An age set once would stand still
/// while whatever should refresh it is stuck, which is exactly when an operator needs it to grow.
#[derive(Clone)]
pub struct AgeGauge {
    ages: GaugeVec,
    since: Arc<Mutex<HashMap<Labels, Option<DateTime<Utc>>>>>,
}

/// The values of a metric's labels, in the order of its label names.
type Labels = Vec<String>;

impl AgeGauge {
    /// Registers the gauge `name` in the default registry.
    pub fn register(name: &str, help: &str, labels: &[&str]) -> AgeGauge {
        let gauge = AgeGauge {
            ages: GaugeVec::new(Opts::new(name, help), labels)
                .expect("metric names are static and valid"),
            since: Arc::default(),
        };
        prometheus::register(Box::new(gauge.clone())).expect("registered once");
        gauge
    }

    /// The oldest waiting thing under `labels` began at `oldest`; `None`: nothing waits (age 0).
    pub fn set(&self, labels: &[&str], oldest: Option<DateTime<Utc>>) {
        let key = labels.iter().map(|l| (*l).to_owned()).collect();
        if let Ok(mut since) = self.since.lock() {
            since.insert(key, oldest);
        }
    }
}

impl Collector for AgeGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.ages.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = Utc::now();
        if let Ok(since) = self.since.lock() {
            for (labels, oldest) in since.iter() {
                let age = oldest.map_or(0.0, |t| {
                    ((now - t).num_milliseconds() as f64 / 1000.0).max(0.0)
                });
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                self.ages.with_label_values(&labels).set(age);
            }
        }
        self.ages.collect()
    }
}

/// How a database's connections are used right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUse {
    pub in_use: u64,
    pub idle: u64,
    /// The most connections the pool opens; `None` where nothing waits for a connection (a
    /// SQLite reader opens one more when all are busy).
    pub max: Option<u64>,
}

/// A connection pool that can say how it is used.
pub trait Pool: Send + Sync {
    fn pool_use(&self) -> PoolUse;
}

/// Reports `pool` as `service`'s database pool for as long as it exists. Pools register
/// themselves when they are made, so no service has to remember to.
pub fn watch_pool<P: Pool + 'static>(service: &str, pool: &Arc<P>) {
    let pool = Arc::downgrade(pool);
    let pool: Weak<dyn Pool> = pool;
    if let Ok(mut pools) = POOLS.watched.lock() {
        pools.push((service.to_owned(), pool));
    }
}

static POOLS: LazyLock<Pools> = LazyLock::new(|| {
    let pools = Pools {
        connections: IntGaugeVec::new(
            Opts::new(
                "myevents_db_pool_connections",
                "Database connections of a service, by state (in_use, idle)",
            ),
            &["service", "state"],
        )
        .expect("metric names are static and valid"),
        max: IntGaugeVec::new(
            Opts::new(
                "myevents_db_pool_max_connections",
                "The most database connections a service's pool opens",
            ),
            &["service"],
        )
        .expect("metric names are static and valid"),
        watched: Arc::default(),
    };
    prometheus::register(Box::new(pools.clone())).expect("registered once");
    pools
});

#[derive(Clone)]
struct Pools {
    connections: IntGaugeVec,
    max: IntGaugeVec,
    watched: Arc<Mutex<Vec<Watched>>>,
}

/// A pool and the service it is reported under.
type Watched = (String, Weak<dyn Pool>);

impl Collector for Pools {
    fn desc(&self) -> Vec<&Desc> {
        let mut desc = self.connections.desc();
        desc.extend(self.max.desc());
        desc
    }

    /// Sums the pools of each service (two handles on one database are one service's), and
    /// forgets pools that are gone.
    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(mut watched) = self.watched.lock() else {
            return Vec::new();
        };
        watched.retain(|(_, pool)| pool.strong_count() > 0);
        let mut by_service: HashMap<&str, PoolUse> = HashMap::new();
        for (service, pool) in watched.iter() {
            let Some(pool) = pool.upgrade() else { continue };
            let now = pool.pool_use();
            let sum = by_service.entry(service).or_default();
            sum.in_use += now.in_use;
            sum.idle += now.idle;
            sum.max = match (sum.max, now.max) {
                (None, max) | (max, None) => max,
                (Some(a), Some(b)) => Some(a + b),
            };
        }
        self.connections.reset();
        self.max.reset();
        for (service, sum) in by_service {
            let gauge = |state| self.connections.with_label_values(&[service, state]);
            gauge("in_use").set(sum.in_use as i64);
            gauge("idle").set(sum.idle as i64);
            if let Some(max) = sum.max {
                self.max.with_label_values(&[service]).set(max as i64);
            }
        }
        let mut families = self.connections.collect();
        families.extend(self.max.collect());
        families
    }
}

/// The router of the metrics port.
pub fn router() -> Router {
    Router::new().route("/metrics", get(render))
}

async fn render() -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(error) = encoder.encode(&prometheus::gather(), &mut body) {
        tracing::error!(%error, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(families: &[MetricFamily], labels: &[(&str, &str)]) -> Option<f64> {
        families.iter().flat_map(|f| f.get_metric()).find_map(|m| {
            let found: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            (found == labels).then(|| m.get_gauge().get_value())
        })
    }

    #[test]
    fn an_age_grows_from_when_the_oldest_began_and_is_zero_when_nothing_waits() {
        let gauge = AgeGauge {
            ages: GaugeVec::new(Opts::new("test_age_seconds", "test"), &["queue"]).unwrap(),
            since: Arc::default(),
        };
        gauge.set(&["stuck"], Some(Utc::now() - chrono::Duration::minutes(10)));
        gauge.set(&["empty"], None);
        let families = gauge.collect();
        let stuck = sample(&families, &[("queue", "stuck")]).expect("stuck's age");
        assert!(stuck >= 600.0, "{stuck}");
        assert_eq!(sample(&families, &[("queue", "empty")]), Some(0.0));
        // Something due in the future has not waited at all.
        gauge.set(&["stuck"], Some(Utc::now() + chrono::Duration::minutes(1)));
        assert_eq!(sample(&gauge.collect(), &[("queue", "stuck")]), Some(0.0));
    }

    struct Fixed(PoolUse);

    impl Pool for Fixed {
        fn pool_use(&self) -> PoolUse {
            self.0
        }
    }

    #[test]
    fn pools_of_one_service_add_up_and_a_dropped_pool_is_forgotten() {
        let pool = |in_use, idle, max| Arc::new(Fixed(PoolUse { in_use, idle, max }));
        let (a, b) = (pool(1, 2, Some(4)), pool(3, 0, Some(4)));
        let gone = pool(5, 5, None);
        watch_pool("pooltest", &a);
        watch_pool("pooltest", &b);
        watch_pool("pooltest-gone", &gone);
        drop(gone);
        let families = POOLS.collect();
        let value = |service, state| sample(&families, &[("service", service), ("state", state)]);
        assert_eq!(value("pooltest", "in_use"), Some(4.0));
        assert_eq!(value("pooltest", "idle"), Some(2.0));
        let max = families
            .iter()
            .find(|f| f.name() == "myevents_db_pool_max_connections")
            .and_then(|f| {
                f.get_metric()
                    .iter()
                    .find(|m| m.get_label().iter().any(|l| l.value() == "pooltest"))
            })
            .map(|m| m.get_gauge().get_value());
        assert_eq!(max, Some(8.0));
        assert_eq!(value("pooltest-gone", "idle"), None);
    }
}
