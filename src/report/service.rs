//! Checked calibration: for each kernel and size asked for as a service time, the target
//! against the single-job time measured at the calibrated n. A size whose measured time is far
//! from its target (a kernel that does not scale linearly in n, a noisy calibration) compares
//! backends at a different service time than its label says, so the report marks it.

use std::collections::BTreeMap;

use super::data::fmt_us;
use super::html::{para, table, Html, TableRow};
use crate::record::Row;

/// How far the measured service time may be from the target, as a fraction of it, before the
/// size is marked.
pub const TOLERANCE: f64 = 0.25;

/// One kernel × size asked for as a service time.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target_us: f64,
    /// Mean measured single-job time over the size's rows; NaN when none recorded one.
    pub service_us: f64,
}

impl Check {
    /// Measured ÷ target − 1: +0.3 is 30 % slower than asked.
    pub fn off(&self) -> f64 {
        self.service_us / self.target_us - 1.0
    }

    /// More than [`TOLERANCE`] off the target; unknown counts as on target.
    pub fn is_off(&self) -> bool {
        self.off().abs() > TOLERANCE
    }
}

/// A row's measured single-job time: `service_us`, or in CSVs written before that column,
/// `single_job_us`, which is the same measurement.
fn measured(r: &Row) -> f64 {
    if r.service_us.is_finite() {
        r.service_us
    } else {
        r.single_job_us
    }
}

/// Every kernel × size that has a target, keyed by (kernel, n). All rows count, valid or not:
/// the measurement is the calibration's, taken before any cell ran.
pub fn checks(rows: &[Row]) -> BTreeMap<(String, u64), Check> {
    let mut sums: BTreeMap<(String, u64), (f64, f64, u32)> = BTreeMap::new();
    for r in rows {
        let Some(target) = r.target_us else { continue };
        let e = sums
            .entry((r.kernel.clone(), r.size))
            .or_insert((target, 0.0, 0));
        let m = measured(r);
        if m.is_finite() && m > 0.0 {
            e.1 += m;
            e.2 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (target_us, sum, count))| {
            let service_us = if count > 0 {
                sum / f64::from(count)
            } else {
                f64::NAN
            };
            (
                k,
                Check {
                    target_us,
                    service_us,
                },
            )
        })
        .collect()
}

/// The note a size label gets when its measured time is off target, else empty.
pub fn off_note(checks: &BTreeMap<(String, u64), Check>, kernel: &str, size: u64) -> String {
    match checks.get(&(kernel.to_string(), size)) {
        Some(c) if c.is_off() => format!(" ⚠ measured {}", fmt_us(c.service_us)),
        _ => String::new(),
    }
}

/// The table of targets against measured service times.
pub fn section(rows: &[Row]) -> Html {
    let checks = checks(rows);
    let mut out = Html::raw("<h3>Service time: target vs measured</h3>".into());
    if checks.is_empty() {
        out.push(para(
            "Every size was given as a work size n, not as a service time, so there is no \
             target to check.",
        ));
        return out;
    }
    let off = checks.values().filter(|c| c.is_off()).count();
    out.push(para(&format!(
        "The single-job time measured on one thread at each calibrated n, against the service \
         time it was calibrated for. Sizes more than {:.0} % off are marked: their verdicts \
         compare backends at the measured service time, not the one in their label. \
         {off} of {} sizes are off.",
        TOLERANCE * 100.0,
        checks.len()
    )));
    out.push(table(
        "num",
        &["kernel", "n", "target", "measured", "off", ""],
        checks.iter().map(|((kernel, n), c)| TableRow {
            class: if c.is_off() { "invalid" } else { "" },
            cells: vec![
                Html::text(kernel),
                Html::text(&n.to_string()),
                Html::text(&fmt_us(c.target_us)),
                Html::text(&if c.service_us.is_finite() {
                    fmt_us(c.service_us)
                } else {
                    "–".into()
                }),
                Html::text(&if c.off().is_finite() {
                    format!("{:+.0} %", c.off() * 100.0)
                } else {
                    "–".into()
                }),
                Html::text(if c.is_off() { "off target" } else { "" }),
            ],
        }),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kernel: &str, size: u64, target: Option<f64>, service: f64, single: f64) -> Row {
        let mut r = crate::report::simulate::synthetic_row(kernel, "process", 1, size, 0, 1.0);
        r.target_us = target;
        r.service_us = service;
        r.single_job_us = single;
        r
    }

    #[test]
    fn sizes_more_than_a_quarter_off_their_target_are_marked() {
        let rows = [
            row("table", 9, Some(1000.0), 480.0, 480.0),
            row("table", 9, Some(1000.0), 520.0, 520.0),
            row("fib", 7, Some(1000.0), 1200.0, 1200.0),
            // An old CSV: no service_us, single_job_us is the same measurement.
            row("tlb", 5, Some(100.0), f64::NAN, 130.0),
            row("fib", 2000, None, 19.0, 19.0),
        ];
        let checks = checks(&rows);
        assert_eq!(checks.len(), 3, "{checks:?}");
        let table = &checks[&("table".to_string(), 9)];
        assert_eq!(table.service_us, 500.0);
        assert!(table.is_off() && (table.off() + 0.5).abs() < 1e-9);
        assert!(!checks[&("fib".to_string(), 7)].is_off());
        assert!(checks[&("tlb".to_string(), 5)].is_off());
        assert_eq!(off_note(&checks, "table", 9), " ⚠ measured 500 µs");
        assert_eq!(off_note(&checks, "fib", 7), "");
        assert_eq!(off_note(&checks, "fib", 2000), "");
        let html = section(&rows);
        assert!(
            html.as_str().contains("2 of 3 sizes are off"),
            "{}",
            html.as_str()
        );
        assert!(html.as_str().contains("-50 %"), "{}", html.as_str());
    }

    #[test]
    fn a_size_with_nothing_measured_is_not_marked() {
        let checks = checks(&[row("fib", 7, Some(50.0), f64::NAN, f64::NAN)]);
        let c = &checks[&("fib".to_string(), 7)];
        assert!(c.service_us.is_nan() && !c.is_off());
    }
}
