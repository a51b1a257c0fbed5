//! Nebula's Prometheus metrics. Labels are command names and outcomes, never ids.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    commands: IntCounterVec,
    retries: IntCounterVec,
    duration: HistogramVec,
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
        let duration = HistogramVec::new(
            HistogramOpts::new("command_attempt_seconds", "Time one attempt took").buckets(vec![
                0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            &["name"],
        )?;
        registry.register(Box::new(commands.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            commands,
            retries,
            duration,
        })
    }

    pub fn finished(&self, name: &str, outcome: &str) {
        self.commands.with_label_values(&[name, outcome]).inc();
    }

    pub fn retried(&self, name: &str) {
        self.retries.with_label_values(&[name]).inc();
    }

    pub fn observe(&self, name: &str, took: Duration) {
        self.duration
            .with_label_values(&[name])
            .observe(took.as_secs_f64());
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
