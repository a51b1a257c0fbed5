//! The PNG charts of the chaos and soak runs: a request timeline with the faults shaded, and
//! plain time series.

use std::path::Path;
use std::time::{Duration, Instant};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::traffic::{Outcome, Request};
use crate::harness::HarnessError;
use crate::harness::report::charts::font_ready;

const BUCKET: Duration = Duration::from_millis(250);
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn err<E: std::fmt::Display>(e: E) -> HarnessError {
    HarnessError::Setup(format!("chart: {e}"))
}

/// The series' legend, in the lower right of `chart`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> Result<(), HarnessError> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// Per series, answered and failed requests per 250 ms (by when they were sent), with the
/// fault windows `(name, from s, to s)` shaded.
pub fn timeline(
    path: &Path,
    title: &str,
    began: Instant,
    series: &[(&str, &[Request])],
    marks: &[(String, f64, f64)],
) -> Result<(), HarnessError> {
    if !font_ready() {
        eprintln!("no DejaVu font (apt-get install fonts-dejavu-core): chart skipped");
        return Ok(());
    }
    let bucket = |r: &Request| ((r.sent - began).as_secs_f64() / BUCKET.as_secs_f64()) as usize;
    let buckets = series
        .iter()
        .flat_map(|(_, log)| log.iter().map(bucket))
        .max()
        .unwrap_or(0)
        + 1;
    let mut counted = Vec::new();
    for (name, log) in series {
        let (mut ok, mut bad) = (vec![0u32; buckets], vec![0u32; buckets]);
        for r in log.iter() {
            let b = bucket(r);
            if r.outcome == Outcome::Ok {
                ok[b] += 1;
            } else {
                bad[b] += 1;
            }
        }
        counted.push((*name, ok, bad));
    }
    let top = counted
        .iter()
        .flat_map(|(_, ok, bad)| ok.iter().chain(bad))
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let secs = buckets as f64 * BUCKET.as_secs_f64();
    let root = BitMapBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..secs, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("requests per 250 ms")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (name, from, to) in marks {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(*from, 0.0), (*to, top)],
                RGBColor(255, 200, 120).mix(0.35).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (*from, top * 0.97),
                ("sans-serif", 13).into_font(),
            )))
            .map_err(err)?;
    }
    let x = |i: usize| i as f64 * BUCKET.as_secs_f64();
    for (k, (name, ok, bad)) in counted.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                ok.iter().enumerate().map(|(i, v)| (x(i), f64::from(*v))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{name}: answered"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        let red = if k == 0 { RED } else { RGBColor(200, 0, 120) };
        chart
            .draw_series(
                bad.iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0)
                    .map(|(i, v)| {
                        Rectangle::new([(x(i), 0.0), (x(i + 1), f64::from(*v))], red.filled())
                    }),
            )
            .map_err(err)?
            .label(format!("{name}: failed"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], red.filled()));
    }
    legend(&mut chart)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Named `(seconds, value)` series.
pub type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Panels of time series sharing the x axis (seconds): one panel per `(y label, series)`.
pub fn panels(path: &Path, title: &str, panels: &[(&str, Series)]) -> Result<(), HarnessError> {
    if !font_ready() {
        eprintln!("no DejaVu font (apt-get install fonts-dejavu-core): chart skipped");
        return Ok(());
    }
    let root = BitMapBackend::new(path, (1400, 320 * panels.len() as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, (y_label, series)) in areas.iter().zip(panels) {
        let points = series.iter().flat_map(|(_, s)| s.iter());
        let (mut x_max, mut y_max) = (1.0f64, 1.0f64);
        for (x, y) in points {
            x_max = x_max.max(*x);
            y_max = y_max.max(*y);
        }
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max * 1.15)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(*y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        for (k, (name, s)) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            chart
                .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
