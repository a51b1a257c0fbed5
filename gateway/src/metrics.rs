//! GateKeeper's Prometheus metrics. Labels are status classes, reasons and listener names:
//! never a host, a key, a key id or a secret.

use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Status classes, in the order of [`Metrics::request`]'s table.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

pub struct Metrics {
    registry: Registry,
    pub latency: Histogram,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounter,
    pub route_cache: IntCounterVec,
    pub routes_known: IntGauge,
    pub revoked_keys: IntGauge,
    pub config_version: IntGauge,
    pub redis_connected: IntGauge,
    pub events: IntCounterVec,
    last_sync: std::sync::Mutex<Option<Instant>>,
    /// `requests` per listener (REST, gRPC) and class, resolved once: no label lookup per request.
    by_listener_class: [[IntCounter; 6]; 2],
    /// `route_lookups_total{result="hit"}`, resolved once.
    pub route_hit: IntCounter,
    pub seconds_since_sync: prometheus::Gauge,
    /// Requests sent again because a pooled node connection was found closed.
    pub upstream_stale: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("gatekeeper".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Requests answered, by listener and status class",
            ),
            &["listener", "class"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from request to the end of the answer",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new("auth_failures_total", "Refused credentials, by reason"),
            &["reason"],
        )?;
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused by a rate limit or the in-flight cap",
        )?;
        let route_cache = IntCounterVec::new(
            Opts::new("route_lookups_total", "Route lookups, by result"),
            &["result"],
        )?;
        let routes_known = IntGauge::new("routes_known", "Routes in memory")?;
        let revoked_keys = IntGauge::new("revoked_keys", "Revoked keys in memory")?;
        let config_version =
            IntGauge::new("config_version", "Platform version of the last full sync")?;
        let redis_connected = IntGauge::new(
            "redis_connected",
            "1 while the sync loop is connected; 0 means serving last known good state",
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "events_total",
                "Change events received, by type (unknown and malformed included)",
            ),
            &["type"],
        )?;
        let upstream_stale = IntCounter::new(
            "upstream_stale_retries_total",
            "Requests sent again because a pooled node connection was found closed",
        )?;
        let seconds_since_sync =
            prometheus::Gauge::new("seconds_since_sync", "Seconds since the last full sync")?;
        for c in [&requests, &auth_failures, &route_cache, &events] {
            registry.register(Box::new((*c).clone()))?;
        }
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(upstream_stale.clone()))?;
        for g in [
            &routes_known,
            &revoked_keys,
            &config_version,
            &redis_connected,
        ] {
            registry.register(Box::new((*g).clone()))?;
        }
        registry.register(Box::new(seconds_since_sync.clone()))?;
        let per_class =
            |listener: &str| CLASSES.map(|c| requests.with_label_values(&[listener, c]));
        let by_listener_class = [per_class("rest"), per_class("grpc")];
        let route_hit = route_cache.with_label_values(&["hit"]);
        Ok(Self {
            registry,
            by_listener_class,
            route_hit,
            latency,
            auth_failures,
            rate_limited,
            route_cache,
            routes_known,
            revoked_keys,
            config_version,
            redis_connected,
            events,
            last_sync: std::sync::Mutex::new(None),
            seconds_since_sync,
            upstream_stale,
        })
    }

    /// Counts an answered request on the REST or gRPC listener.
    pub fn request(&self, grpc: bool, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.by_listener_class[usize::from(grpc)][class].inc();
    }

    pub fn synced(&self) {
        if let Ok(mut t) = self.last_sync.lock() {
            *t = Some(Instant::now());
        }
    }

    pub fn render(&self) -> String {
        if let Some(t) = self.last_sync.lock().ok().and_then(|t| *t) {
            self.seconds_since_sync.set(t.elapsed().as_secs_f64());
        }
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
