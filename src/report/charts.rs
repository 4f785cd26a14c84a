//! Line and scatter charts, drawn with plotters into SVG strings that the HTML inlines.
//!
//! plotters runs here without a font backend: its SVG backend writes every label as a
//! `<text>` element and leaves the glyphs to the browser, so no font files are needed and the
//! output is byte-for-byte deterministic.

use std::collections::BTreeMap;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::Agg;
use super::usl::UslFit;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 400;
pub const FONT: &str = "sans-serif";
/// Width of the legend column right of a chart: legends inside the plot hide data wherever
/// the data happen to be, which for a report over arbitrary sweeps is anywhere.
const LEGEND_W: u32 = 112;

/// Fixed colours, so a backend looks the same in every chart.
pub fn backend_colour(backend: &str) -> RGBColor {
    match backend {
        "process" => RGBColor(214, 39, 40),
        "prefork" => RGBColor(255, 127, 14),
        "shm" => RGBColor(188, 189, 34),
        "rayon" => RGBColor(31, 119, 180),
        "tokio" => RGBColor(44, 160, 44),
        other => {
            let extra = [
                RGBColor(148, 103, 189),
                RGBColor(140, 86, 75),
                RGBColor(227, 119, 194),
            ];
            let h = other
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
            extra[h % extra.len()]
        }
    }
}

/// Draws into a fresh SVG canvas of the standard size and returns the markup.
pub fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>) -> Result<String> {
    svg_sized((WIDTH, HEIGHT), draw)
}

/// Draws into a fresh SVG canvas of `size` pixels and returns the markup.
pub fn svg_sized(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
    Triangle(RGBColor),
    Block(RGBColor),
}

/// Splits off a legend column on the right, draws `entries` there, and returns the area left
/// for the chart.
pub fn side_legend<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    entries: &[(String, Mark)],
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    let (plot, side) = root.split_horizontally(WIDTH - LEGEND_W);
    let style = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, mark)) in entries.iter().enumerate() {
        let y = 48 + 20 * i as i32;
        match *mark {
            Mark::Line(c) => side.draw(&PathElement::new([(2, y), (22, y)], c.stroke_width(2)))?,
            Mark::Dashed(c) => {
                side.draw(&PathElement::new([(2, y), (9, y)], c.stroke_width(2)))?;
                side.draw(&PathElement::new([(15, y), (22, y)], c.stroke_width(2)))?;
            }
            Mark::Dot(c) => side.draw(&Circle::new((12, y), 4, c.filled()))?,
            Mark::Triangle(c) => side.draw(&TriangleMarker::new((12, y), 5, c.filled()))?,
            Mark::Block(c) => side.draw(&Rectangle::new([(4, y - 6), (20, y + 6)], c.filled()))?,
        }
        side.draw(&Text::new(label.clone(), (28, y), style.clone()))?;
    }
    Ok(plot)
}

/// The frame every chart shares: its title, margin and label areas.
pub fn framed<'a, 'b>(
    plot: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(plot);
    builder
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60);
    builder
}

/// The mesh every chart uses: labelled bold lines only; the light sub-grid is noise here.
fn light_mesh_off() -> ShapeStyle {
    TRANSPARENT.into()
}

/// Compact number for axis labels: 950, 12k, 3.4M.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A positive range for a log axis around `values`, padded so points are not on the frame.
fn log_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    (lo <= hi).then(|| (lo / 1.25, hi * 1.25))
}

fn max_finite(values: impl Iterator<Item = f64>) -> f64 {
    values.filter(|v| v.is_finite()).fold(0.0, f64::max)
}

/// Throughput vs workers, one line per backend (means, with each repetition as a faint dot),
/// the ideal line, and each backend's fitted USL curve as a thin pale line.
pub fn throughput(
    title: &str,
    series: &BTreeMap<String, Vec<(u32, &Agg)>>,
    order: &[String],
    fits: &BTreeMap<String, UslFit>,
) -> Result<String> {
    let mut workers: Vec<u32> = series.values().flatten().map(|(w, _)| *w).collect();
    workers.sort_unstable();
    workers.dedup();
    let (Some(&wmin), Some(&wmax)) = (workers.first(), workers.last()) else {
        anyhow::bail!("no data for {title}");
    };
    let reference = series
        .values()
        .flatten()
        .map(|(_, a)| *a)
        .find(|a| a.ideal(1).is_some());
    let ideal: Vec<(f64, f64)> = match reference {
        Some(a) => {
            let mut ws = workers.clone();
            ws.extend((wmin..=wmax).filter(|&w| w == a.cores));
            ws.sort_unstable();
            ws.dedup();
            ws.iter()
                .filter_map(|&w| a.ideal(w).map(|x| (f64::from(w), x)))
                .collect()
        }
        None => Vec::new(),
    };
    let curve = |fit: &UslFit| -> Vec<(f64, f64)> {
        let (a, b) = (f64::from(wmin).ln(), f64::from(wmax).ln());
        (0..=60)
            .map(|i| (a + (b - a) * f64::from(i) / 60.0).exp())
            .map(|n| (n, fit.predict(n)))
            .collect()
    };
    let ymax = max_finite(
        series
            .values()
            .flatten()
            .flat_map(|(_, a)| a.throughput.iter().copied())
            .chain(ideal.iter().map(|p| p.1))
            .chain(
                fits.values()
                    .flat_map(|f| curve(f).into_iter().map(|p| p.1)),
            ),
    )
    .max(1.0)
        * 1.1;
    let key_points: Vec<f64> = workers.iter().map(|&w| f64::from(w)).collect();
    let mut legend: Vec<(String, Mark)> = Vec::new();
    if !ideal.is_empty() {
        legend.push(("ideal".into(), Mark::Dashed(BLACK)));
    }
    legend.extend(
        order
            .iter()
            .filter(|b| series.contains_key(*b))
            .map(|b| (b.clone(), Mark::Line(backend_colour(b)))),
    );
    if !fits.is_empty() {
        legend.push(("USL fit".into(), Mark::Line(RGBColor(170, 170, 170))));
    }
    svg(|root| {
        let plot = side_legend(root, &legend)?;
        let mut chart = framed(&plot, title).build_cartesian_2d(
            (f64::from(wmin) / 1.3..f64::from(wmax) * 1.3)
                .log_scale()
                .with_key_points(key_points),
            0.0..ymax,
        )?;
        chart
            .configure_mesh()
            .x_desc("workers")
            .y_desc("throughput (requests/s)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| si(*v))
            .label_style((FONT, 13))
            .light_line_style(light_mesh_off())
            .draw()?;
        if !ideal.is_empty() {
            chart.draw_series(DashedLineSeries::new(
                ideal.clone(),
                6,
                4,
                BLACK.stroke_width(2),
            ))?;
        }
        for backend in order {
            let Some(points) = series.get(backend) else {
                continue;
            };
            let colour = backend_colour(backend);
            let dots = points.iter().flat_map(|(w, a)| {
                a.throughput
                    .iter()
                    .map(move |&x| Circle::new((f64::from(*w), x), 2, colour.mix(0.35).filled()))
            });
            chart.draw_series(dots)?;
            let means: Vec<(f64, f64)> = points
                .iter()
                .map(|(w, a)| (f64::from(*w), a.tput_mean))
                .collect();
            chart.draw_series(LineSeries::new(means.clone(), colour.stroke_width(2)))?;
            chart.draw_series(means.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
            if let Some(fit) = fits.get(backend) {
                chart.draw_series(LineSeries::new(
                    curve(fit),
                    colour.mix(0.45).stroke_width(1),
                ))?;
            }
        }
        Ok(())
    })
}

/// Latency (p50 filled, p99 hollow) against throughput for every measured cell of a kernel
/// and size, one colour per backend; the latency axis is logarithmic because queueing makes
/// it span decades.
pub fn latency(
    title: &str,
    cells: &BTreeMap<String, Vec<&Agg>>,
    order: &[String],
) -> Result<String> {
    let all = || cells.values().flatten();
    let Some((ylo, yhi)) = log_range(all().flat_map(|a| [a.lat_p50, a.lat_p99])) else {
        anyhow::bail!("no latencies for {title}");
    };
    let xmax = max_finite(all().map(|a| a.tput_mean)).max(1.0) * 1.1;
    let legend: Vec<(String, Mark)> = order
        .iter()
        .filter(|b| cells.contains_key(*b))
        .flat_map(|b| {
            let c = backend_colour(b);
            [
                (format!("{b} p50"), Mark::Dot(c)),
                (format!("{b} p99"), Mark::Triangle(c)),
            ]
        })
        .collect();
    svg(|root| {
        let plot = side_legend(root, &legend)?;
        let mut chart =
            framed(&plot, title).build_cartesian_2d(0.0..xmax, (ylo..yhi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("throughput (requests/s)")
            .y_desc("latency (µs)")
            .x_label_formatter(&|v| si(*v))
            .y_label_formatter(&|v| si(*v))
            .label_style((FONT, 13))
            .light_line_style(light_mesh_off())
            .draw()?;
        for backend in order {
            let Some(aggs) = cells.get(backend) else {
                continue;
            };
            let colour = backend_colour(backend);
            let ok = |v: f64| v.is_finite() && v > 0.0;
            chart.draw_series(
                aggs.iter()
                    .filter(|a| ok(a.lat_p50) && a.tput_mean.is_finite())
                    .map(|a| Circle::new((a.tput_mean, a.lat_p50), 4, colour.filled())),
            )?;
            chart.draw_series(
                aggs.iter()
                    .filter(|a| ok(a.lat_p99) && a.tput_mean.is_finite())
                    .map(|a| TriangleMarker::new((a.tput_mean, a.lat_p99), 5, colour.filled())),
            )?;
        }
        Ok(())
    })
}

/// Efficiency (throughput ÷ ideal) against the single-thread job time: where a line climbs
/// towards 1 the per-request overhead (for `process`, the pipe round trip) is amortized.
pub fn efficiency(
    title: &str,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    order: &[String],
) -> Result<String> {
    let Some((xlo, xhi)) = log_range(series.values().flatten().map(|p| p.0)) else {
        anyhow::bail!("no job times for {title}");
    };
    let ymax = max_finite(series.values().flatten().map(|p| p.1)).max(1.0) * 1.1;
    let mut legend = vec![("ideal".to_string(), Mark::Dashed(BLACK))];
    legend.extend(
        order
            .iter()
            .filter(|b| series.contains_key(*b))
            .map(|b| (b.clone(), Mark::Line(backend_colour(b)))),
    );
    svg(|root| {
        let plot = side_legend(root, &legend)?;
        let mut chart =
            framed(&plot, title).build_cartesian_2d((xlo..xhi).log_scale(), 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("single-thread job time (µs)")
            .y_desc("efficiency (throughput ÷ ideal)")
            .x_label_formatter(&|v| si(*v))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((FONT, 13))
            .light_line_style(light_mesh_off())
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(xlo, 1.0), (xhi, 1.0)],
            6,
            4,
            BLACK.stroke_width(2),
        ))?;
        for backend in order {
            let Some(points) = series.get(backend) else {
                continue;
            };
            let colour = backend_colour(backend);
            let points: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|p| p.0 > 0.0 && p.0.is_finite() && p.1.is_finite())
                .collect();
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_is_compact() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_000.0), "12k");
        assert_eq!(si(3_400_000.0), "3.4M");
        assert_eq!(si(0.5), "0.5");
    }
}
