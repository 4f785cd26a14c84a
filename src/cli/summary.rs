//! The printed summary of a load run or a merge.

use crate::load::{Cmd, LoadReport, LoadSpec, Pace, Summary};
use std::fmt::Write;

/// A microsecond figure in the unit that keeps it readable.
pub(crate) fn time(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

/// `p50 … p90 … p99 … p99.9 … max … mean …`
pub(crate) fn percentiles(s: &Summary) -> String {
    if s.count == 0 {
        return "no samples".to_string();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}",
        time(s.p50_us),
        time(s.p90_us),
        time(s.p99_us),
        time(s.p999_us),
        time(s.max_us),
        time(s.mean_us)
    )
}

fn counts(m: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

/// The whole summary, warnings last, then how user kernels were checked.
pub(crate) fn summary(spec: &LoadSpec, r: &LoadReport) -> String {
    let open = matches!(spec.pace, Pace::Open { .. });
    let mut out = body(&format!("load: {}", spec.describe()), open, r);
    let user: Vec<&str> = spec
        .mix
        .iter()
        .filter(|(k, _)| k.is_user())
        .map(|(k, _)| k.name())
        .collect();
    if spec.cmd == Cmd::Compute && !user.is_empty() {
        let _ = writeln!(
            out,
            "  checked      {} for consistency (the same n gives the same result on every reply), not against a formula",
            user.join(", ")
        );
    }
    out
}

/// One driver's line in a merge: its counts, rate and latency.
pub(crate) fn host_line(name: &str, r: &LoadReport) -> String {
    format!(
        "{name:<12} {:>8} ok {:>6} failed {:>10.1} req/s   {}",
        r.ok,
        r.total_errors(),
        r.throughput_rps,
        percentiles(&r.latency)
    )
}

/// The summary under `header`; `open` says whether latency counts from intended send times.
pub(crate) fn body(header: &str, open: bool, r: &LoadReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{header}");
    let _ = writeln!(
        o,
        "  requests     {} ok, {} failed, {} sent in {:.3} s",
        r.ok,
        r.total_errors(),
        r.sent,
        r.duration_s
    );
    let _ = writeln!(o, "  throughput   {:.1} req/s", r.throughput_rps);
    if r.tail_s > 0.0 {
        let after = r.ok.saturating_sub(r.in_window.unwrap_or(r.ok));
        let _ = writeln!(
            o,
            "  tail         {:.3} s after the window's end ({after} more replies, verified but not in the throughput)",
            r.tail_s
        );
    }
    if let Some(target) = r.target_rps {
        let _ = writeln!(
            o,
            "  send rate    {:.1} req/s of {target} asked ({} late, {} never sent)",
            r.achieved_rps, r.late_sends, r.unsent
        );
    }
    if !r.errors.is_empty() {
        let _ = writeln!(o, "  errors       {}", counts(&r.errors));
    }
    let origin = if open {
        "from intended send"
    } else {
        "from send"
    };
    let _ = writeln!(o, "  latency      {}   ({origin})", percentiles(&r.latency));
    if open {
        let _ = writeln!(
            o,
            "  service      {}   (from actual send)",
            percentiles(&r.service)
        );
    }
    if let Some(lag) = &r.send_lag {
        let _ = writeln!(
            o,
            "  send lag     {}   (intended → actual send)",
            percentiles(lag)
        );
    }
    let split = [
        ("queue", &r.queue, "waiting for a worker"),
        ("compute", &r.compute, "inside the kernel"),
        (
            "transport",
            &r.transport,
            "server − queue − compute: dispatch, IPC",
        ),
        ("network", &r.network, "service − server: sockets, driver"),
    ];
    if split.iter().any(|(_, s, _)| s.is_some()) {
        let _ = writeln!(o, "  where the time went (p50 / p99):");
        for (name, s, what) in split {
            if let Some(s) = s {
                let _ = writeln!(
                    o,
                    "    {name:<10} {:>10} / {:<10} {what}",
                    time(s.p50_us),
                    time(s.p99_us)
                );
            }
        }
    } else {
        let _ = writeln!(o, "  server timings: none in the replies");
    }
    if r.per_kernel.len() > 1 {
        let _ = writeln!(o, "  per kernel:");
        for (k, s) in &r.per_kernel {
            let _ = writeln!(o, "    {k:<8} {:>6} ok  {}", s.count, percentiles(s));
        }
    }
    if r.warmup_sent > 0 {
        let _ = write!(
            o,
            "  warmup       {} sent, {} ok",
            r.warmup_sent, r.warmup_ok
        );
        if !r.warmup_errors.is_empty() {
            let _ = write!(o, ", failed: {}", counts(&r.warmup_errors));
        }
        let _ = writeln!(o);
    }
    if r.late_replies > 0 {
        let _ = writeln!(o, "  late replies {} (after their timeout)", r.late_replies);
    }
    let wall = r.wall_s.max(f64::MIN_POSITIVE) * r.driver_threads.max(1) as f64;
    let _ = writeln!(
        o,
        "  client CPU   {:.3} s ({:.0}% of {} driver thread{} over the run)",
        r.client_cpu_s,
        100.0 * r.client_cpu_s / wall,
        r.driver_threads,
        if r.driver_threads == 1 { "" } else { "s" }
    );
    if !r.driver_busy.is_empty() {
        let busy: Vec<String> = r
            .driver_busy
            .iter()
            .map(|b| format!("{:.0}%", b * 100.0))
            .collect();
        let _ = writeln!(
            o,
            "  driver busy  {} (each driver thread's share of the run spent running tasks)",
            busy.join(", ")
        );
    }
    for note in &r.notes {
        let _ = writeln!(o, "  note: {note}");
    }
    if let Some(s) = &r.shortfall {
        let _ = writeln!(o, "warning: {s}");
    }
    if r.driver_saturated {
        let _ = writeln!(
            o,
            "warning: the driver used over 90% of its threads' time; it may have been the bottleneck (try --driver-threads, or run the driver on other cores)"
        );
    }
    if let Some(w) = &r.driver_busy_warning {
        let _ = writeln!(o, "warning: {w}");
    }
    if r.ok == 0 {
        let _ = writeln!(o, "warning: no correct reply: nothing valid was measured");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_pick_readable_units() {
        assert_eq!(time(12.4), "12 µs");
        assert_eq!(time(1_234.0), "1.23 ms");
        assert_eq!(time(2_500_000.0), "2.500 s");
        assert_eq!(percentiles(&Summary::default()), "no samples");
    }
}
