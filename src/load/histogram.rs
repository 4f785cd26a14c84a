//! Latency recording: HdrHistograms in microseconds and the summaries drawn from them.
//!
//! One `Recorder` serves every connection of a run. Per-connection histograms would cost
//! tens to hundreds of KiB each for every metric (latency, service, the server's split, each
//! kernel), which adds up to gigabytes at a thousand connections; a shared recorder costs one
//! uncontended lock per batch of replies instead (the driver runs on one thread by default).

use super::histlog::{EncodedInterval, IntervalRecorder};
use crate::protocol::Timings;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Prefix of the part holding one kernel's latency.
pub const KERNEL_TAG: &str = "kernel:";

/// Significant decimal digits every histogram keeps: 0.1% resolution.
pub const SIGFIG: u8 = 3;

/// A new auto-resizing histogram of microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // Only the significant-figure count can make this fail, and 3 is valid.
    Histogram::new(SIGFIG).expect("3 significant figures is a valid histogram precision")
}

/// Records `v`, growing the histogram as needed. Only a value beyond what any histogram can
/// hold fails to grow it, and is then clamped to the largest trackable value.
///
/// (`saturating_record` alone would clamp to the *current* range, which for an auto-resizing
/// histogram starts at 2.)
pub fn put(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

/// Percentiles of one distribution, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Summarises a histogram; all zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let q = |p: f64| h.value_at_quantile(p) as f64;
        Summary {
            count: h.len(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max() as f64,
            mean_us: h.mean(),
        }
    }
}

/// One verified reply, ready to record.
pub(crate) struct Sample {
    /// When the reply arrived.
    pub at: Instant,
    /// From the intended send time (open loop) or the send (closed loop) to the reply.
    pub latency_us: u64,
    /// From the actual send to the reply.
    pub service_us: u64,
    /// Index into the spec's kernel mix.
    pub entry: usize,
    pub timings: Option<Timings>,
}

/// The server's split of a request's time, recorded only when the server sends timings.
struct Split {
    queue: Histogram<u64>,
    compute: Histogram<u64>,
    server: Histogram<u64>,
    transport: Histogram<u64>,
    network: Histogram<u64>,
}

/// Every histogram of a run.
pub(crate) struct Recorder {
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    /// From the intended to the actual send (latency − service): the driver's timer slack
    /// plus any wait for a free slot in the window.
    pub send_lag: Histogram<u64>,
    split: Option<Split>,
    /// Latency per mix entry; empty for a mix of one entry, whose latency is `latency` itself
    /// (see [`Recorder::entry_latency`]): recorded once, not twice.
    per_entry: Vec<Histogram<u64>>,
    /// Compute time per mix entry, from replies that carried timings: whether a kernel's
    /// latency rose because it waited or because its own work slowed. Empty for a mix of
    /// one entry, as `per_entry`.
    per_entry_compute: Vec<Histogram<u64>>,
    intervals: IntervalRecorder,
}

/// Summaries of the server's split, each `None` when no reply carried timings.
pub(crate) struct SplitSummaries {
    pub queue: Option<Summary>,
    pub compute: Option<Summary>,
    pub server: Option<Summary>,
    pub transport: Option<Summary>,
    pub network: Option<Summary>,
}

/// Per-entry histograms for a mix of `entries`: none for one entry, whose are the totals.
fn per_entry(entries: usize) -> Vec<Histogram<u64>> {
    if entries <= 1 {
        Vec::new()
    } else {
        (0..entries).map(|_| new_histogram()).collect()
    }
}

fn us(v: f64) -> u64 {
    // Negative or NaN timings from a confused server record as 0 rather than wrapping.
    if v > 0.0 {
        // `v.round() as u64` without libm's call: the fraction of a positive f64 is exact, so
        // halves round up as `round` rounds them (an f64 this large has none; the cast
        // saturates as it would).
        let whole = v as u64;
        if v - whole as f64 >= 0.5 {
            whole.saturating_add(1)
        } else {
            whole
        }
    } else {
        0
    }
}

impl Recorder {
    /// `origin` is when measuring starts; latency-log intervals are `interval` long from it.
    pub fn new(entries: usize, origin: Instant, interval: Duration) -> Recorder {
        Recorder {
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
            split: None,
            per_entry: per_entry(entries),
            per_entry_compute: per_entry(entries),
            intervals: IntervalRecorder::new(origin, interval),
        }
    }

    pub fn record(&mut self, s: &Sample) {
        put(&mut self.latency, s.latency_us);
        put(&mut self.service, s.service_us);
        put(
            &mut self.send_lag,
            s.latency_us.saturating_sub(s.service_us),
        );
        if let Some(h) = self.per_entry.get_mut(s.entry) {
            put(h, s.latency_us);
        }
        self.intervals.record(s.at, s.latency_us);
        if let Some(t) = s.timings {
            if let Some(h) = self.per_entry_compute.get_mut(s.entry) {
                put(h, us(t.compute_us));
            }
            let split = self.split.get_or_insert_with(|| Split {
                queue: new_histogram(),
                compute: new_histogram(),
                server: new_histogram(),
                transport: new_histogram(),
                network: new_histogram(),
            });
            put(&mut split.queue, us(t.queue_us));
            put(&mut split.compute, us(t.compute_us));
            put(&mut split.server, us(t.server_us));
            put(
                &mut split.transport,
                us(t.server_us - t.queue_us - t.compute_us),
            );
            put(&mut split.network, us(s.service_us as f64 - t.server_us));
        }
    }

    /// Latency per mix entry, in mix order.
    pub fn entry_latency(&self) -> Vec<&Histogram<u64>> {
        if self.per_entry.is_empty() {
            vec![&self.latency]
        } else {
            self.per_entry.iter().collect()
        }
    }

    /// Compute time per mix entry, in mix order; `None` where no reply carried timings.
    pub fn entry_compute(&self) -> Vec<Option<&Histogram<u64>>> {
        if self.per_entry_compute.is_empty() {
            vec![self.split.as_ref().map(|sp| &sp.compute)]
        } else {
            self.per_entry_compute
                .iter()
                .map(|h| (!h.is_empty()).then_some(h))
                .collect()
        }
    }

    pub fn split_summaries(&self) -> SplitSummaries {
        let s = |f: fn(&Split) -> &Histogram<u64>| self.split.as_ref().map(|sp| Summary::of(f(sp)));
        SplitSummaries {
            queue: s(|sp| &sp.queue),
            compute: s(|sp| &sp.compute),
            server: s(|sp| &sp.server),
            transport: s(|sp| &sp.transport),
            network: s(|sp| &sp.network),
        }
    }

    /// Every whole-run histogram but the latency, by the name a merged log tags it with:
    /// `service`, `send_lag`, the server's split when timings came, `kernel:NAME` per mix
    /// entry. `merge` adds these across hosts, so its summary can say all a single run says.
    pub fn parts(&self, kernels: &[&str]) -> BTreeMap<String, Histogram<u64>> {
        let mut parts = BTreeMap::new();
        parts.insert("service".to_string(), self.service.clone());
        parts.insert("send_lag".to_string(), self.send_lag.clone());
        if let Some(sp) = &self.split {
            for (name, h) in [
                ("queue", &sp.queue),
                ("compute", &sp.compute),
                ("server", &sp.server),
                ("transport", &sp.transport),
                ("network", &sp.network),
            ] {
                parts.insert(name.to_string(), h.clone());
            }
        }
        for (name, h) in kernels.iter().zip(self.entry_latency()) {
            parts.insert(format!("{KERNEL_TAG}{name}"), h.clone());
        }
        parts
    }

    /// Closes the latency log at `end`.
    pub fn finish_intervals(&mut self, end: Instant) -> (Vec<EncodedInterval>, Option<String>) {
        self.intervals.finish(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `us` rounds as `f64::round` does, halves and the values just below them included, and
    /// records what is not a positive number as 0.
    #[test]
    fn timings_round_to_whole_microseconds_as_round_does() {
        let below_half = 0.5f64.next_down();
        for v in [
            0.4,
            0.5,
            below_half,
            1.5,
            2.5,
            2.499_999,
            12.345,
            1e6 + 0.5,
            4_503_599_627_370_495.5,
            9_007_199_254_740_993.0,
            1e19,
            1e30,
            f64::INFINITY,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(us(v), v.round() as u64, "{v}");
        }
        for v in [0.0, -0.0, -1.5, f64::NEG_INFINITY, f64::NAN] {
            assert_eq!(us(v), 0, "{v}");
        }
    }

    proptest::proptest! {
        #[test]
        fn timings_round_as_round_does_anywhere(v in 0.0f64..1e16) {
            proptest::prop_assert_eq!(us(v), v.round() as u64, "{}", v);
        }
    }

    #[test]
    fn summary_of_known_values() {
        let mut h = new_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let s = Summary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500.0);
        assert_eq!(s.p90_us, 900.0);
        assert_eq!(s.p99_us, 990.0);
        assert_eq!(s.max_us, 1000.0);
        assert!((s.mean_us - 500.5).abs() < 0.5);
        assert_eq!(Summary::of(&new_histogram()), Summary::default());
    }

    #[test]
    fn recorder_splits_server_time_only_when_timings_arrive() {
        let origin = Instant::now();
        let mut r = Recorder::new(2, origin, Duration::from_secs(1));
        let mut sample = Sample {
            at: origin,
            latency_us: 900,
            service_us: 800,
            entry: 1,
            timings: None,
        };
        r.record(&sample);
        assert!(r.split_summaries().server.is_none());
        sample.timings = Some(Timings {
            queue_us: 100.0,
            compute_us: 500.0,
            server_us: 650.0,
        });
        r.record(&sample);
        let split = r.split_summaries();
        assert_eq!(split.transport.map(|s| s.p50_us), Some(50.0));
        assert_eq!(split.network.map(|s| s.p50_us), Some(150.0));
        assert_eq!(split.queue.map(|s| s.count), Some(1));
        let per_entry = r.entry_latency();
        assert_eq!((per_entry[0].len(), per_entry[1].len()), (0, 2));
        assert_eq!(r.latency.len(), 2);
        let compute = r.entry_compute();
        assert!(compute[0].is_none());
        assert_eq!(compute[1].map(|h| h.len()), Some(1));
    }
}
