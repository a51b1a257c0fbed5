//! What a scenario leaves behind: the JSON of every run, a Markdown table of medians and
//! spreads, and PNG charts (plotters) of throughput and latency percentiles per peer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::HarnessError;
use super::load::Outcome;

/// One measured run of one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub peer: String,
    /// What was run, e.g. `closed 32 conns` or `open 12000 req/s`.
    pub mode: String,
    pub round: usize,
    pub ok: u64,
    pub rejected: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// CPU seconds of the proxy process (all its threads and workers) per 1000 answers.
    pub cpu_s_per_1k: Option<f64>,
}

impl Run {
    pub fn new(
        peer: &str,
        mode: &str,
        round: usize,
        o: &Outcome,
        cpu_seconds: Option<f64>,
    ) -> Self {
        Self {
            peer: peer.to_owned(),
            mode: mode.to_owned(),
            round,
            ok: o.ok,
            rejected: o.rejected,
            errors: o.errors,
            seconds: o.measured.as_secs_f64(),
            rate: o.rate(),
            p50_ms: o.percentile_ms(0.50),
            p99_ms: o.percentile_ms(0.99),
            p999_ms: o.percentile_ms(0.999),
            max_ms: o.latency_us.max() as f64 / 1000.0,
            cpu_s_per_1k: cpu_seconds
                .filter(|_| o.ok > 0)
                .map(|c| c * 1000.0 / o.ok as f64),
        }
    }
}

/// The median and spread of one metric over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: values[0],
            max: values[n - 1],
            n,
        })
    }

    pub fn show(&self, digits: usize) -> String {
        if self.n == 1 || self.min == self.max {
            format!("{:.digits$}", self.median)
        } else {
            format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                self.median, self.min, self.max
            )
        }
    }
}

/// A finished scenario.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub title: String,
    pub machine: String,
    pub pinning: String,
    pub started_at: String,
    pub runs: Vec<Run>,
    /// Free-form figures that are not per-run rates (propagation times, memory, ...).
    pub figures: BTreeMap<String, serde_json::Value>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, title: &str, pinning: String) -> Self {
        Self {
            scenario: scenario.to_owned(),
            title: title.to_owned(),
            machine: machine(),
            pinning,
            started_at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            runs: Vec::new(),
            figures: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Runs grouped by (mode, peer), in the order first seen.
    pub fn groups(&self) -> Vec<((String, String), Vec<&Run>)> {
        let mut order: Vec<(String, String)> = Vec::new();
        let mut by: BTreeMap<(String, String), Vec<&Run>> = BTreeMap::new();
        for r in &self.runs {
            let k = (r.mode.clone(), r.peer.clone());
            if !by.contains_key(&k) {
                order.push(k.clone());
            }
            by.entry(k).or_default().push(r);
        }
        order
            .into_iter()
            .map(|k| {
                let runs = by.remove(&k).unwrap_or_default();
                (k, runs)
            })
            .collect()
    }

    /// Median over rounds of `metric` for (mode, peer).
    pub fn median(&self, mode: &str, peer: &str, metric: fn(&Run) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.mode == mode && r.peer == peer)
            .filter_map(metric)
            .collect();
        Spread::of(values).map(|s| s.median)
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "### {}\n\n{}; {}; {} (medians over rounds, spread min–max in brackets)\n\n",
            self.title, self.machine, self.pinning, self.started_at
        );
        if !self.runs.is_empty() {
            md.push_str("| mode | peer | req/s | p50 ms | p99 ms | p99.9 ms | CPU s / 1k req | rounds |\n|---|---|---|---|---|---|---|---|\n");
            for ((mode, peer), runs) in self.groups() {
                let col = |f: fn(&Run) -> Option<f64>, d: usize| {
                    Spread::of(runs.iter().filter_map(|r| f(r)).collect())
                        .map_or("–".to_owned(), |s| s.show(d))
                };
                md.push_str(&format!(
                    "| {mode} | {peer} | {} | {} | {} | {} | {} | {} |\n",
                    col(|r| Some(r.rate), 0),
                    col(|r| Some(r.p50_ms), 3),
                    col(|r| Some(r.p99_ms), 3),
                    col(|r| Some(r.p999_ms), 3),
                    col(|r| r.cpu_s_per_1k, 4),
                    runs.len()
                ));
            }
            md.push('\n');
        }
        if !self.figures.is_empty() {
            md.push_str("| figure | value |\n|---|---|\n");
            for (k, v) in &self.figures {
                let shown = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                md.push_str(&format!("| {k} | {shown} |\n"));
            }
            md.push('\n');
        }
        for n in &self.notes {
            md.push_str(&format!("- {n}\n"));
        }
        md
    }

    /// Writes `<dir>/<scenario>.json`, `.md` and the charts; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
        let io = |e: std::io::Error| HarnessError::Setup(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let json = dir.join(format!("{}.json", self.scenario));
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| HarnessError::Setup(e.to_string()))?;
        std::fs::write(&json, body).map_err(io)?;
        let md = dir.join(format!("{}.md", self.scenario));
        std::fs::write(&md, self.markdown()).map_err(io)?;
        let mut files = vec![json, md];
        if !self.runs.is_empty() {
            files.extend(charts::draw(self, dir)?);
        }
        Ok(files)
    }
}

fn machine() -> String {
    // Counted from /proc/cpuinfo: the harness pins itself, which narrows what
    // available_parallelism reports.
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = info
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(1);
    let model = Some(info)
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs ({model})")
}

pub(crate) mod charts {
    use std::path::{Path, PathBuf};

    use plotters::prelude::*;

    use super::{Report, Spread};
    use crate::harness::HarnessError;

    const FONT_FILES: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];

    /// Registers a system font once (plotters draws text with ab_glyph, which needs one).
    pub(crate) fn font_ready() -> bool {
        static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *READY.get_or_init(|| {
            FONT_FILES.iter().any(|f| {
                std::fs::read(f).is_ok_and(|bytes| {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
                })
            })
        })
    }

    fn err<E: std::fmt::Display>(e: E) -> HarnessError {
        HarnessError::Setup(format!("chart: {e}"))
    }

    /// Grouped bars: one group per label, one bar per series, with min–max whiskers.
    fn bars(
        path: &Path,
        title: &str,
        y: &str,
        labels: &[String],
        series: &[(&str, Vec<Option<Spread>>)],
    ) -> Result<(), HarnessError> {
        let top = series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().map(|s| s.max))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.15;
        let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0_f64..labels.len() as f64, 0.0_f64..top)
            .map_err(err)?;
        let names = labels.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
        ];
        let width = 0.8 / series.len().max(1) as f64;
        for (si, (name, values)) in series.iter().enumerate() {
            let color = palette[si % palette.len()];
            let x0 = |i: usize| i as f64 + 0.1 + si as f64 * width;
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, s)| {
                    s.as_ref().map(|s| {
                        Rectangle::new(
                            [(x0(i), 0.0), (x0(i) + width * 0.9, s.median)],
                            color.filled(),
                        )
                    })
                }))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, s)| {
                    s.as_ref().filter(|s| s.n > 1).map(|s| {
                        let mid = x0(i) + width * 0.45;
                        PathElement::new(vec![(mid, s.min), (mid, s.max)], BLACK.stroke_width(2))
                    })
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }

    /// Throughput per peer and latency percentiles per peer, one chart each per mode.
    pub fn draw(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
        if !font_ready() {
            eprintln!("no DejaVu font (apt-get install fonts-dejavu-core): charts skipped");
            return Ok(Vec::new());
        }
        let mut modes: Vec<String> = Vec::new();
        for r in &report.runs {
            if !modes.contains(&r.mode) {
                modes.push(r.mode.clone());
            }
        }
        let mut files = Vec::new();
        for (mi, mode) in modes.iter().enumerate() {
            let runs: Vec<_> = report.runs.iter().filter(|r| &r.mode == mode).collect();
            let mut peers: Vec<String> = Vec::new();
            for r in &runs {
                if !peers.contains(&r.peer) {
                    peers.push(r.peer.clone());
                }
            }
            let of = |peer: &str, f: fn(&super::Run) -> f64| {
                Spread::of(
                    runs.iter()
                        .filter(|r| r.peer == peer)
                        .map(|r| f(r))
                        .collect(),
                )
            };
            let rate: Vec<_> = peers.iter().map(|p| of(p, |r| r.rate)).collect();
            let path = dir.join(format!("{}-{mi}-rate.png", report.scenario));
            bars(
                &path,
                &format!("{}: {mode}", report.title),
                "answers per second",
                &peers,
                &[("req/s", rate)],
            )?;
            files.push(path);
            let series = [
                ("p50", peers.iter().map(|p| of(p, |r| r.p50_ms)).collect()),
                ("p99", peers.iter().map(|p| of(p, |r| r.p99_ms)).collect()),
                (
                    "p99.9",
                    peers.iter().map(|p| of(p, |r| r.p999_ms)).collect(),
                ),
            ];
            let path = dir.join(format!("{}-{mi}-latency.png", report.scenario));
            bars(
                &path,
                &format!("{}: {mode}, latency", report.title),
                "milliseconds",
                &peers,
                &series,
            )?;
            files.push(path);
        }
        Ok(files)
    }
}
