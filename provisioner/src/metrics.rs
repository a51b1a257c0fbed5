//! Nebula's Prometheus metrics. Labels are command names, outcomes, drivers, and the fixed
//! `kind` and `object` names of the error and repair types, never ids or free text, so every
//! series is bounded.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    commands: IntCounterVec,
    retries: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    repairs: IntCounterVec,
    repair_failures: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("nebula".into()), None)?;
        let commands = IntCounterVec::new(
            Opts::new(
                "commands_total",
                "Commands finished, by name and outcome (done, skipped, dead_lettered)",
            ),
            &["name", "outcome"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "command_retries_total",
                "Failed attempts that will be retried",
            ),
            &["name"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "command_failures_total",
                "Failed attempts, by command name and by what failed (kind: redis, \
                 driver_timeout, kubernetes_api, qdrant_api, drain_refused, panic, ...); \
                 each is then retried or parked",
            ),
            &["name", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("command_attempt_seconds", "Time one attempt took").buckets(vec![
                0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            &["name"],
        )?;
        let repairs = IntCounterVec::new(
            Opts::new(
                "repairs_total",
                "Objects the reconcile loop found drifted and put back, by driver and object \
                 (statefulset, service, secret, node, ...)",
            ),
            &["driver", "object"],
        )?;
        let repair_failures = IntCounterVec::new(
            Opts::new(
                "repair_failures_total",
                "Repairs that failed (tried again on the next pass), by driver and kind",
            ),
            &["driver", "kind"],
        )?;
        for c in [&commands, &retries, &failures, &repairs, &repair_failures] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            commands,
            retries,
            failures,
            duration,
            repairs,
            repair_failures,
        })
    }

    pub fn finished(&self, name: &str, outcome: &str) {
        self.commands.with_label_values(&[name, outcome]).inc();
    }

    pub fn retried(&self, name: &str) {
        self.retries.with_label_values(&[name]).inc();
    }

    /// A failed attempt of command `name`; `kind` is the error's
    /// [`kind`](crate::handlers::HandlerError::kind).
    pub fn failed(&self, name: &str, kind: &'static str) {
        self.failures.with_label_values(&[name, kind]).inc();
    }

    pub fn observe(&self, name: &str, took: Duration) {
        self.duration
            .with_label_values(&[name])
            .observe(took.as_secs_f64());
    }

    pub fn repaired(&self, driver: &'static str, object: &'static str) {
        self.repairs.with_label_values(&[driver, object]).inc();
    }

    pub fn repair_failed(&self, driver: &'static str, kind: &'static str) {
        self.repair_failures
            .with_label_values(&[driver, kind])
            .inc();
    }

    pub fn render(&self) -> String {
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
