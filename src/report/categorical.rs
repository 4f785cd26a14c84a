//! Charts over categorical axes: the process ÷ thread ratio heatmap and the latency-split
//! stacked bars. Categories sit at integer positions on an f64 axis with one key point each,
//! which keeps a single category from producing a zero-width range.

use std::ops::Range;

use anyhow::Result;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{backend_colour, si, side_legend, svg, Mark, FONT};
use super::stats::Outcome;

/// One heatmap cell: the ratio and whether its interval excluded 1.
#[derive(Debug, Clone, Copy)]
pub struct HeatCell {
    pub ratio: f64,
    pub outcome: Outcome,
}

/// Diverging colour around parity: white at 1, red as process gets faster, blue as threads
/// do, saturating at 4x either way. Log scale so 2x and 0.5x are equally strong.
fn diverging(ratio: f64) -> RGBColor {
    let t = (ratio.log2() / 2.0).clamp(-1.0, 1.0);
    let toward = if t >= 0.0 {
        (202.0, 0.0, 32.0)
    } else {
        (5.0, 113.0, 176.0)
    };
    let t = t.abs();
    let mix = |c: f64| (255.0 + (c - 255.0) * t).round() as u8;
    RGBColor(mix(toward.0), mix(toward.1), mix(toward.2))
}

/// An axis of `n` categories at 0, 1, …, n−1, each one unit wide, with a tick at each.
/// (plotters' own key-point override does not combine with the f64 label formatter.)
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = (value + 0.5) / self.0.max(1) as f64;
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.0).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.0.max(1) as f64 - 0.5
    }
}

fn category_label(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The process ÷ best-thread ratio over workers (x) × size (y). Each cell is annotated with
/// its ratio, bold where the bootstrap interval excludes 1.
pub fn heatmap(
    title: &str,
    workers: &[u32],
    sizes: &[u64],
    cell: impl Fn(u32, u64) -> Option<HeatCell>,
) -> Result<String> {
    let xs: Vec<String> = workers.iter().map(u32::to_string).collect();
    let ys: Vec<String> = sizes.iter().map(u64::to_string).collect();
    let y_label_area = 16 + 8 * ys.iter().map(String::len).max().unwrap_or(1) as u32;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(y_label_area.max(50))
            .build_cartesian_2d(Categories(xs.len()), Categories(ys.len()))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("workers")
            .y_desc("size (n)")
            .x_label_formatter(&|v| category_label(&xs, *v))
            .y_label_formatter(&|v| category_label(&ys, *v))
            .label_style((FONT, 13))
            .draw()?;
        for (i, &w) in workers.iter().enumerate() {
            for (j, &s) in sizes.iter().enumerate() {
                let (x, y) = (i as f64, j as f64);
                let corners = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                let Some(c) = cell(w, s) else {
                    chart
                        .draw_series([Rectangle::new(corners, RGBColor(235, 235, 235).filled())])?;
                    chart.draw_series([Text::new(
                        "n/a",
                        (x, y),
                        TextStyle::from((FONT, 13))
                            .color(&RGBColor(120, 120, 120))
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )])?;
                    continue;
                };
                let fill = diverging(c.ratio);
                chart.draw_series([Rectangle::new(corners, fill.filled())])?;
                chart.draw_series([Rectangle::new(corners, WHITE.stroke_width(2))])?;
                let strong = (c.ratio.log2() / 2.0).abs() > 0.6;
                let ink = if strong { WHITE } else { BLACK };
                let font = if c.outcome == Outcome::Tie {
                    FontDesc::new(FontFamily::SansSerif, 15.0, FontStyle::Normal)
                } else {
                    FontDesc::new(FontFamily::SansSerif, 15.0, FontStyle::Bold)
                };
                chart.draw_series([Text::new(
                    format!("{:.2}", c.ratio),
                    (x, y),
                    TextStyle::from(font)
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )])?;
            }
        }
        Ok(())
    })
}

/// One backend's median latency split into stages, µs.
#[derive(Debug, Clone)]
pub struct Split {
    pub backend: String,
    pub queue: f64,
    pub transport: f64,
    pub compute: f64,
    /// End-to-end p50 minus server p50: client, kernel network stack and socket I/O.
    pub client: f64,
}

const STAGES: [(&str, RGBColor); 4] = [
    ("compute", RGBColor(102, 166, 30)),
    ("queue", RGBColor(230, 171, 2)),
    ("transport / IPC", RGBColor(117, 112, 179)),
    ("client + network", RGBColor(166, 166, 166)),
];

/// Stacked bars of each backend's median latency by stage.
pub fn latency_split(title: &str, splits: &[Split]) -> Result<String> {
    let names: Vec<String> = splits.iter().map(|s| s.backend.clone()).collect();
    let stages = |s: &Split| {
        [s.compute, s.queue, s.transport, s.client].map(|v| {
            if v.is_finite() {
                v.max(0.0)
            } else {
                0.0
            }
        })
    };
    let ymax = splits
        .iter()
        .map(|s| stages(s).iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let legend: Vec<(String, Mark)> = STAGES
        .iter()
        .map(|(stage, c)| (stage.to_string(), Mark::Block(*c)))
        .collect();
    svg(|root| {
        let plot = side_legend(root, &legend)?;
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(Categories(names.len()), 0.0..ymax)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("backend")
            .y_desc("median latency (µs)")
            .x_label_formatter(&|v| category_label(&names, *v))
            .y_label_formatter(&|v| si(*v))
            .label_style((FONT, 13))
            .draw()?;
        for (k, (_, colour)) in STAGES.iter().enumerate() {
            let bars = splits.iter().enumerate().map(|(i, s)| {
                let v = stages(s);
                let base: f64 = v[..k].iter().sum();
                let x = i as f64;
                Rectangle::new([(x - 0.3, base), (x + 0.3, base + v[k])], colour.filled())
            });
            chart.draw_series(bars)?;
        }
        // A thin outline in the backend's colour ties each bar to the other charts.
        chart.draw_series(splits.iter().enumerate().map(|(i, s)| {
            let top: f64 = stages(s).iter().sum();
            let x = i as f64;
            Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, top)],
                backend_colour(&s.backend).stroke_width(2),
            )
        }))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_white_at_parity_and_symmetric() {
        assert_eq!(diverging(1.0), RGBColor(255, 255, 255));
        let (up, down) = (diverging(2.0), diverging(0.5));
        assert!(up.0 > up.2, "{up:?}");
        assert!(down.2 > down.0, "{down:?}");
        assert_eq!(diverging(100.0), diverging(4.0));
    }

    #[test]
    fn category_labels_only_at_integers() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(category_label(&names, 1.0), "b");
        assert_eq!(category_label(&names, 0.5), "");
        assert_eq!(category_label(&names, 5.0), "");
    }
}
