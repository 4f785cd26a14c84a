//! Charts over categorical axes: the overview map of verdicts and the latency-split stacked
//! bars. Categories sit at integer positions on an f64 axis with one key point each,
//! which keeps a single category from producing a zero-width range.

use std::ops::Range;

use anyhow::Result;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::charts::{backend_colour, framed, si, side_legend, svg, svg_sized, Mark, FONT};
use super::verdict::Verdict;

/// One cell of the overview map: a challenger ÷ best-thread ratio and its verdict.
#[derive(Debug, Clone, Copy)]
pub struct MapCell {
    pub ratio: f64,
    pub verdict: Verdict,
}

/// The mark a cell carries for its verdict (the map's legend explains them).
pub fn verdict_mark(v: Verdict) -> &'static str {
    match v {
        Verdict::ProcessWins => "▲",
        Verdict::ThreadsWin => "▼",
        Verdict::Equivalent => "≈",
        Verdict::Inconclusive => "?",
    }
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

/// Text that stays readable on a cell of `fill`'s ratio: white on the saturated ends.
fn ink(ratio: f64) -> RGBColor {
    if (ratio.log2() / 2.0).abs() > 0.6 {
        WHITE
    } else {
        BLACK
    }
}

/// A text style that owns its colour (plotters' builder borrows it).
fn label_style(size: f64, colour: RGBColor, pos: Pos, bold: bool) -> TextStyle<'static> {
    let weight = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    TextStyle {
        font: FontDesc::new(FontFamily::SansSerif, size, weight),
        color: colour.to_backend_color(),
        pos,
    }
}

const CELL_W: i32 = 84;
const CELL_H: i32 = 30;
const PANEL_GAP: i32 = 28;
const PANEL_HEAD: i32 = 46;
const TITLE_H: i32 = 34;
const LEGEND_H: i32 = 64;
const MARGIN: i32 = 12;
/// Panels per row before the map wraps, so it stays about a screen wide.
const MAX_ROW_W: i32 = 1300;

/// The report's first figure: kernels (rows) × service times (columns), one panel per worker
/// count; colour is the ratio, the mark the verdict. `cell(workers, kernel, column)` gives a
/// cell or None where that combination was not measured.
pub fn overview_map(
    title: &str,
    workers: &[u32],
    kernels: &[String],
    columns: &[String],
    cell: impl Fn(u32, usize, usize) -> Option<MapCell>,
) -> Result<String> {
    let longest = kernels.iter().map(|k| k.chars().count()).max().unwrap_or(4) as i32;
    let label_w = (8 * longest + 16).max(60);
    let panel_w = label_w + CELL_W * columns.len().max(1) as i32;
    let panel_h = PANEL_HEAD + CELL_H * kernels.len().max(1) as i32;
    let per_row =
        ((MAX_ROW_W + PANEL_GAP) / (panel_w + PANEL_GAP)).clamp(1, workers.len().max(1) as i32);
    let rows = (workers.len() as i32 + per_row - 1) / per_row;
    let width = 2 * MARGIN + per_row * panel_w + (per_row - 1) * PANEL_GAP;
    let width = width.max(560);
    let height = TITLE_H + rows * (panel_h + PANEL_GAP) + LEGEND_H;
    let centre = Pos::new(HPos::Center, VPos::Center);
    let left = Pos::new(HPos::Left, VPos::Center);
    let right = Pos::new(HPos::Right, VPos::Center);
    let grey = |v: u8| RGBColor(v, v, v);
    let text = |size: f64, colour: RGBColor, pos: Pos| label_style(size, colour, pos, false);
    let bold = |size: f64, colour: RGBColor| label_style(size, colour, centre, true);
    svg_sized((width as u32, height as u32), |root| {
        root.draw(&Text::new(
            title.to_string(),
            (MARGIN, TITLE_H / 2),
            text(18.0, BLACK, left),
        ))?;
        for (p, &w) in workers.iter().enumerate() {
            let x0 = MARGIN + (p as i32 % per_row) * (panel_w + PANEL_GAP);
            let y0 = TITLE_H + (p as i32 / per_row) * (panel_h + PANEL_GAP);
            let heading = format!("{w} worker{}", if w == 1 { "" } else { "s" });
            root.draw(&Text::new(
                heading,
                (x0 + label_w, y0 + 12),
                text(15.0, BLACK, left),
            ))?;
            for (c, label) in columns.iter().enumerate() {
                let x = x0 + label_w + CELL_W * c as i32 + CELL_W / 2;
                root.draw(&Text::new(
                    label.clone(),
                    (x, y0 + 34),
                    text(13.0, grey(60), centre),
                ))?;
            }
            for (k, kernel) in kernels.iter().enumerate() {
                let y = y0 + PANEL_HEAD + CELL_H * k as i32;
                root.draw(&Text::new(
                    kernel.clone(),
                    (x0 + label_w - 8, y + CELL_H / 2),
                    text(13.0, BLACK, right),
                ))?;
                for c in 0..columns.len() {
                    let x = x0 + label_w + CELL_W * c as i32;
                    let corners = [(x, y), (x + CELL_W, y + CELL_H)];
                    let mid = (x + CELL_W / 2, y + CELL_H / 2);
                    match cell(w, k, c) {
                        Some(m) => {
                            root.draw(&Rectangle::new(corners, diverging(m.ratio).filled()))?;
                            let label = format!("{:.2} {}", m.ratio, verdict_mark(m.verdict));
                            let style = if m.verdict == Verdict::Inconclusive {
                                text(14.0, ink(m.ratio), centre)
                            } else {
                                bold(14.0, ink(m.ratio))
                            };
                            root.draw(&Text::new(label, mid, style))?;
                        }
                        None => {
                            root.draw(&Rectangle::new(corners, grey(235).filled()))?;
                            root.draw(&Text::new("n/a", mid, text(12.0, grey(120), centre)))?;
                        }
                    }
                    root.draw(&Rectangle::new(corners, WHITE.stroke_width(2)))?;
                }
            }
        }
        // The legend: the colour scale at a few ratios, then what each mark means.
        let y = height - LEGEND_H + 8;
        root.draw(&Text::new(
            "ratio",
            (MARGIN, y + 10),
            text(13.0, BLACK, left),
        ))?;
        for (i, r) in [0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0]
            .into_iter()
            .enumerate()
        {
            let x = MARGIN + 44 + 40 * i as i32;
            let corners = [(x, y), (x + 40, y + 20)];
            root.draw(&Rectangle::new(corners, diverging(r).filled()))?;
            root.draw(&Rectangle::new(corners, grey(200).stroke_width(1)))?;
            root.draw(&Text::new(
                format!("{r}"),
                (x + 20, y + 10),
                text(12.0, ink(r), centre),
            ))?;
        }
        for (i, v) in Verdict::ALL.iter().enumerate() {
            root.draw(&Text::new(
                format!("{} {v}", verdict_mark(*v)),
                (MARGIN + 130 * i as i32, y + 38),
                text(13.0, BLACK, left),
            ))?;
        }
        Ok(())
    })
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
        let mut chart =
            framed(&plot, title).build_cartesian_2d(Categories(names.len()), 0.0..ymax)?;
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
