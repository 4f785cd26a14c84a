//! The outcome of a load run: counts, rates, latency summaries, and the verdict on whether the
//! numbers can be trusted (rate achieved, driver not saturated).

use super::conn::{Plan, Tally};
use super::histlog::EncodedInterval;
use super::histogram::Summary;
use super::spec::{Cmd, Pace};
use super::verify::kind;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// The driver counts as saturated when its CPU time exceeds this share of its threads' wall
/// time: a driver that is busy 90% of the time delays its own sends and reads, and the latency
/// it reports is partly its own.
pub const SATURATION: f64 = 0.9;
/// A driver thread busier than this share of the run gets a warning: above it, replies wait
/// for the thread often enough to show up in the tail latencies.
pub const BUSY_WARNING: f64 = 0.75;
/// An open loop that delivers less than this share of its schedule reports a shortfall.
pub const RATE_TOLERANCE: f64 = 0.95;

/// Everything a load run measured. Latencies are in microseconds.
///
/// It reads back from JSON (as `merge` reads each host's record), every field defaulting to
/// zero or empty, so a record from an older driver still reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Verified correct replies to measured requests.
    #[serde(default)]
    pub ok: u64,
    /// Failed requests by kind: the server's error codes, plus `mismatch`, `timeout`,
    /// `connection`, `bad_reply`, `unmatched_id`, `ids_exhausted` (and `unknown_error` for
    /// codes outside the contract).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Measured requests sent.
    #[serde(default)]
    pub sent: u64,
    /// Measured requests sent more than 1 ms after their intended time (open loop).
    #[serde(default)]
    pub late_sends: u64,
    /// Open loop with a duration: scheduled requests that were never sent, because the window
    /// stayed full until the run ended.
    #[serde(default)]
    pub unsent: u64,
    /// Replies that came after their request was already counted as a timeout.
    #[serde(default)]
    pub late_replies: u64,
    /// The measured window. Duration-bounded: the `--duration` asked for, from the start of
    /// measuring. Request-bounded: from the start of measuring (the first measured send) to the
    /// last measured send or reply.
    #[serde(default)]
    pub duration_s: f64,
    /// Verified replies completed inside the window, per second of it. Replies after a
    /// duration-bounded window's end are still verified (their errors count, and `ok` has
    /// them) but not counted here: a window that drains its backlog after the end would
    /// otherwise credit that tail to the load it measured. Request-bounded runs count every
    /// reply, over first send → last reply.
    #[serde(default)]
    pub throughput_rps: f64,
    /// Verified replies counted in `throughput_rps`; absent in records from older drivers,
    /// which counted every reply in `ok`.
    #[serde(default)]
    pub in_window: Option<u64>,
    /// Seconds from a duration-bounded window's end to the last verified reply: the drain
    /// tail (0 when nothing came after the end, and for request-bounded runs).
    #[serde(default)]
    pub tail_s: f64,
    /// Open loop: the rate asked for.
    #[serde(default)]
    pub target_rps: Option<f64>,
    /// Requests per second that went out. In an open loop: measured requests sent over the
    /// run's duration, or (count-bounded) over the longer of the schedule's span and the span
    /// the sends took.
    #[serde(default)]
    pub achieved_rps: f64,
    /// From the intended send time to the reply (the send time, in a closed loop).
    #[serde(default)]
    pub latency: Summary,
    /// From the actual send to the reply.
    #[serde(default)]
    pub service: Summary,
    /// Open loop: from the intended to the actual send. Its floor is the driver's timer
    /// resolution (tokio's is 1 ms); above that, requests waited for a free slot.
    #[serde(default)]
    pub send_lag: Option<Summary>,
    /// Server timings, present when the server sent them: waiting for a worker.
    #[serde(default)]
    pub queue: Option<Summary>,
    /// Inside the kernel.
    #[serde(default)]
    pub compute: Option<Summary>,
    /// From request read to reply encoded.
    #[serde(default)]
    pub server: Option<Summary>,
    /// Server time outside queue and kernel: dispatch and IPC (server − queue − compute).
    #[serde(default)]
    pub transport: Option<Summary>,
    /// Service time outside the server: sockets, network stack and this driver
    /// (service − server).
    #[serde(default)]
    pub network: Option<Summary>,
    /// Latency per kernel of the mix.
    #[serde(default)]
    pub per_kernel: BTreeMap<String, Summary>,
    /// Compute time per kernel of the mix; empty when no reply carried timings.
    #[serde(default)]
    pub per_kernel_compute: BTreeMap<String, Summary>,
    /// Warmup requests sent, answered correctly, and failed by kind (not in the numbers above).
    #[serde(default)]
    pub warmup_sent: u64,
    #[serde(default)]
    pub warmup_ok: u64,
    #[serde(default)]
    pub warmup_errors: BTreeMap<String, u64>,
    /// Wall time of the whole run: warmup, measuring and waiting for the last replies.
    #[serde(default)]
    pub wall_s: f64,
    /// CPU time (user + system) this process used during the run.
    #[serde(default)]
    pub client_cpu_s: f64,
    /// Threads of the runtime that drove the load.
    #[serde(default)]
    pub driver_threads: usize,
    /// Client CPU ÷ (run wall time × driver threads) > 0.9: the driver may be the bottleneck.
    #[serde(default)]
    pub driver_saturated: bool,
    /// Share of the run each driver thread spent running tasks (tokio's busy time per runtime
    /// worker), in runtime worker order. Time in the I/O driver is not in it; the CPU share
    /// above is.
    #[serde(default)]
    pub driver_busy: Vec<f64>,
    /// A sentence, when some driver thread was busier than [`BUSY_WARNING`].
    #[serde(default)]
    pub driver_busy_warning: Option<String>,
    /// Open loop: a sentence saying the rate was not achieved, when it was not.
    #[serde(default)]
    pub shortfall: Option<String>,
    /// Reasons behind the errors, one line per distinct reason.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The latency histogram (µs), for merging with other runs.
    #[serde(skip, default = "super::histogram::new_histogram")]
    pub hist: Histogram<u64>,
    /// The run's other histograms (µs) by name, for `--hist-log` and `merge`: see
    /// `Recorder::parts`.
    #[serde(skip)]
    pub parts: BTreeMap<String, Histogram<u64>>,
    /// The latency histogram cut into one-second intervals, for `--hist-log`.
    #[serde(skip)]
    pub intervals: Vec<EncodedInterval>,
    /// Wall-clock time when measuring started.
    #[serde(skip, default = "epoch")]
    pub started: SystemTime,
}

fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

impl LoadReport {
    /// A report of nothing: every count zero, every summary empty.
    pub fn empty() -> LoadReport {
        serde_json::from_str("{}").expect("every field of a report has a default")
    }

    /// Failed measured requests of every kind.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Why this run fails (SPEC §6: a reply failed verification, a request timed out, or
    /// nothing valid was measured), one reason per line; empty when it passes. Warmup counts
    /// too: its replies are verified like the rest, only not recorded. A request left
    /// unanswered by a lost connection fails the run as a timeout does, and so does a
    /// connection that could not be opened or that the server dropped: either way, requests
    /// the run asked for went unanswered or unsent. Error replies from the server (`overloaded`,
    /// `shutting_down`, …) are measurements, not failures.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.ok == 0 {
            why.push("no correct reply: nothing valid was measured".to_string());
        }
        let count = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        for (kind, what) in FAILING {
            let (measured, warm) = (count(&self.errors, kind), count(&self.warmup_errors, kind));
            if measured + warm == 0 {
                continue;
            }
            let in_warmup = if warm == 0 {
                String::new()
            } else {
                format!(" ({warm} in warmup)")
            };
            why.push(format!("{} {what}{in_warmup}", measured + warm));
        }
        why
    }
}

/// The error kinds that fail a run, and what each says happened (see
/// [`LoadReport::failures`]).
pub const FAILING: [(&str, &str); 6] = [
    (kind::MISMATCH, "wrong results (mismatch)"),
    (
        kind::BAD_REPLY,
        "replies that break the protocol (bad_reply)",
    ),
    (
        kind::UNMATCHED_ID,
        "replies to no request in flight: duplicates or ids never sent (unmatched_id)",
    ),
    (kind::TIMEOUT, "requests without a reply in time (timeout)"),
    (
        kind::CONNECTION,
        "requests or connections lost with their connection (connection)",
    ),
    (
        kind::IDS_EXHAUSTED,
        "connections that used up their request ids and stopped early (ids_exhausted)",
    ),
];

/// What the run's clock and CPU meter said.
pub(crate) struct Timing {
    pub finished: Instant,
    pub cpu_s: Option<f64>,
    pub threads: usize,
    /// Busy share of each runtime worker over the run.
    pub busy: Vec<f64>,
    pub started: SystemTime,
}

/// The warning for driver threads busier than [`BUSY_WARNING`], if any was.
pub fn busy_warning(busy: &[f64]) -> Option<String> {
    let hot: Vec<String> = busy
        .iter()
        .enumerate()
        .filter(|(_, b)| **b > BUSY_WARNING)
        .map(|(i, b)| format!("thread {i} {:.0}%", b * 100.0))
        .collect();
    (!hot.is_empty()).then(|| {
        format!(
            "driver thread{} over {:.0}% busy ({}): the driver may have added to the latencies (give more --driver-threads, or more driver hosts)",
            if hot.len() == 1 { "" } else { "s" },
            BUSY_WARNING * 100.0,
            hot.join(", ")
        )
    })
}

pub(crate) fn assemble(plan: &Plan, tallies: Vec<Tally>, t: Timing) -> LoadReport {
    let spec = &plan.spec;
    let mut total = Tally::default();
    let mut notes: BTreeMap<String, u64> = BTreeMap::new();
    for tally in tallies {
        total.ok += tally.ok;
        total.in_window += tally.in_window;
        total.sent += tally.sent;
        total.late_sends += tally.late_sends;
        total.unsent += tally.unsent;
        total.late_replies += tally.late_replies;
        total.warmup_sent += tally.warmup_sent;
        total.warmup_ok += tally.warmup_ok;
        for (k, v) in tally.errors {
            *total.errors.entry(k).or_insert(0) += v;
        }
        for (k, v) in tally.warmup_errors {
            *total.warmup_errors.entry(k).or_insert(0) += v;
        }
        total.last_send = total.last_send.max(tally.last_send);
        total.last_intended = total.last_intended.max(tally.last_intended);
        total.last_reply = total.last_reply.max(tally.last_reply);
        for n in tally.notes {
            *notes.entry(n).or_insert(0) += 1;
        }
    }
    let since_measure = |i: Instant| {
        i.saturating_duration_since(plan.measure_start)
            .as_secs_f64()
    };
    let duration_s = match (plan.end, total.last_reply.max(total.last_send)) {
        (Some(end), _) => since_measure(end),
        (None, Some(last)) => since_measure(last),
        (None, None) => since_measure(t.finished),
    };
    let tail_s = match (plan.end, total.last_reply) {
        (Some(end), Some(last)) => last.saturating_duration_since(end).as_secs_f64(),
        _ => 0.0,
    };
    let per_sec = |n: u64| {
        if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        }
    };

    let run_wall = t
        .finished
        .saturating_duration_since(plan.start)
        .as_secs_f64();
    let cpu = t.cpu_s.unwrap_or(0.0);
    let driver_saturated =
        run_wall > 0.0 && cpu / (run_wall * t.threads.max(1) as f64) > SATURATION;

    let (target_rps, achieved_rps, shortfall) = match spec.pace {
        Pace::Closed => (None, per_sec(total.sent), None),
        Pace::Open { rate, .. } => {
            let (achieved, shortfall) = open_loop_rate(plan, &total, rate, driver_saturated);
            (Some(rate), achieved, shortfall)
        }
    };

    let mut rec = plan.recorder.lock();
    let (intervals, log_error) = rec.finish_intervals(t.finished);
    let split = rec.split_summaries();
    let kernels: Vec<&str> = match spec.cmd {
        Cmd::Ping => Vec::new(),
        Cmd::Compute => spec.mix.iter().map(|(k, _)| k.name()).collect(),
    };
    let per_kernel = kernels
        .iter()
        .zip(rec.entry_latency())
        .map(|(k, h)| (k.to_string(), Summary::of(h)))
        .collect();
    let per_kernel_compute = kernels
        .iter()
        .zip(rec.entry_compute())
        .filter_map(|(k, h)| Some((k.to_string(), Summary::of(h?))))
        .collect();
    let mut notes: Vec<String> = notes
        .into_iter()
        .map(|(n, c)| {
            if c > 1 {
                format!("{n} (on {c} connections)")
            } else {
                n
            }
        })
        .collect();
    notes.extend(log_error);
    let name =
        |m: BTreeMap<&'static str, u64>| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    LoadReport {
        ok: total.ok,
        errors: name(total.errors),
        sent: total.sent,
        late_sends: total.late_sends,
        unsent: total.unsent,
        late_replies: total.late_replies,
        duration_s,
        throughput_rps: per_sec(total.in_window),
        in_window: Some(total.in_window),
        tail_s,
        target_rps,
        achieved_rps,
        latency: Summary::of(&rec.latency),
        service: Summary::of(&rec.service),
        send_lag: target_rps.map(|_| Summary::of(&rec.send_lag)),
        queue: split.queue,
        compute: split.compute,
        server: split.server,
        transport: split.transport,
        network: split.network,
        per_kernel,
        per_kernel_compute,
        warmup_sent: total.warmup_sent,
        warmup_ok: total.warmup_ok,
        warmup_errors: name(total.warmup_errors),
        wall_s: run_wall,
        client_cpu_s: cpu,
        driver_threads: t.threads,
        driver_saturated,
        driver_busy_warning: busy_warning(&t.busy),
        driver_busy: t.busy,
        shortfall,
        notes,
        hist: rec.latency.clone(),
        parts: rec.parts(&kernels),
        intervals,
        started: t.started,
    }
}

/// The open loop's achieved rate and, when it fell short, why.
///
/// Requests go out short of the schedule in two ways: never (a duration-bounded run ends with
/// a backlog still waiting for window slots) or late (a count-bounded run takes longer than its
/// schedule). The achieved rate is what was sent over the longer of the schedule's span and
/// the sends' actual span. It is judged against the seeded schedule's own rate rather than the
/// nominal one, so the sampling noise of a short Poisson schedule is not called a shortfall.
fn open_loop_rate(plan: &Plan, total: &Tally, rate: f64, saturated: bool) -> (f64, Option<String>) {
    let gap = 1.0 / rate;
    let since = |i: Option<Instant>| {
        i.map_or(0.0, |i| {
            i.saturating_duration_since(plan.measure_start)
                .as_secs_f64()
        })
    };
    let scheduled = total.sent + total.unsent;
    let schedule_span = match plan.end {
        Some(end) => end
            .saturating_duration_since(plan.measure_start)
            .as_secs_f64(),
        None => since(total.last_intended) + gap,
    };
    // A duration-bounded run sends nothing after its end; a count-bounded one sends all of
    // its schedule, late if it must, and is judged by how long that took.
    let span = match plan.end {
        Some(_) => schedule_span,
        None => schedule_span.max(since(total.last_send) + gap),
    };
    let achieved = total.sent as f64 / span;
    let asked = scheduled as f64 / schedule_span;
    let kept = if asked > 0.0 { achieved / asked } else { 0.0 };
    if kept >= RATE_TOLERANCE {
        return (achieved, None);
    }
    let who = if saturated {
        "the driver itself was CPU-saturated"
    } else {
        "the server could not keep up (each connection's window of in-flight requests stayed full)"
    };
    let shortfall = format!(
        "asked for {rate:.0} req/s but only {achieved:.0} req/s went out ({:.0}% of the schedule; {} sends late, {} never sent): {who}. Latencies count from the intended send times, so they include the wait.",
        kept * 100.0,
        total.late_sends,
        total.unsent
    );
    (achieved, Some(shortfall))
}

#[cfg(test)]
mod tests {
    use super::{busy_warning, LoadReport};

    fn report(ok: u64, errors: &[(&str, u64)], warmup: &[(&str, u64)]) -> LoadReport {
        let map = |m: &[(&str, u64)]| m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        LoadReport {
            ok,
            errors: map(errors),
            warmup_errors: map(warmup),
            ..LoadReport::empty()
        }
    }

    /// SPEC §6: a failed verification, a timeout, a lost request or nothing valid fails the
    /// run, warmup included; the server's own error replies do not.
    #[test]
    fn the_run_fails_on_wrong_replies_timeouts_lost_requests_or_nothing_valid() {
        assert!(report(5, &[], &[]).failures().is_empty());
        let served = report(
            5,
            &[("overloaded", 3), ("shutting_down", 1)],
            &[("timeout", 0)],
        );
        assert!(served.failures().is_empty(), "{:?}", served.failures());
        assert_eq!(
            report(0, &[], &[]).failures(),
            ["no correct reply: nothing valid was measured"]
        );
        for kind in [
            "mismatch",
            "bad_reply",
            "unmatched_id",
            "timeout",
            "connection",
            "ids_exhausted",
        ] {
            let measured = report(5, &[(kind, 2)], &[]).failures();
            assert_eq!(measured.len(), 1, "{kind}: {measured:?}");
            assert!(
                measured[0].starts_with("2 ") && measured[0].contains(kind),
                "{measured:?}"
            );
            let warm = report(5, &[(kind, 2)], &[(kind, 1)]).failures();
            assert!(
                warm[0].starts_with("3 ") && warm[0].contains("(1 in warmup)"),
                "{warm:?}"
            );
            assert_eq!(report(5, &[], &[(kind, 1)]).failures().len(), 1, "{kind}");
        }
    }

    #[test]
    fn only_threads_over_three_quarters_busy_are_named() {
        assert_eq!(busy_warning(&[]), None);
        assert_eq!(busy_warning(&[0.2, 0.75]), None);
        let w = busy_warning(&[0.2, 0.9, 0.76]).unwrap();
        assert!(w.contains("thread 1 90%, thread 2 76%"), "{w}");
        assert!(w.starts_with("driver threads over 75% busy"), "{w}");
    }
}
