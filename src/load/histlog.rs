//! Latency over time in the standard HdrHistogram interval log format, and merging such logs.
//!
//! A run cuts its latency histogram into intervals (one per second by default), each stored
//! compressed (V2 + deflate, as the log itself stores them) so a long run costs a few hundred
//! bytes per second rather than a full histogram. `--hist-log` writes them with
//! `hdrhistogram`'s interval log writer; the Java `HistogramLogProcessor` and other tools read
//! the same files. `merge` adds the intervals of any number of logs, from several load
//! processes or hosts, into one histogram: percentiles of the union, not averages of
//! percentiles.

use super::histogram::{new_histogram, put};
use anyhow::{bail, Context};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// One interval of the latency log.
#[derive(Debug, Clone)]
pub struct EncodedInterval {
    /// Start, from the beginning of the measured window.
    pub start: Duration,
    pub length: Duration,
    /// The interval's histogram in V2 + deflate encoding.
    pub v2_deflate: Vec<u8>,
}

impl EncodedInterval {
    pub fn decode(&self) -> anyhow::Result<Histogram<u64>> {
        Deserializer::new()
            .deserialize(&mut &self.v2_deflate[..])
            .map_err(|e| anyhow::anyhow!("cannot decode an interval histogram: {e:?}"))
    }
}

/// Cuts recorded values into fixed intervals from `origin`.
pub(crate) struct IntervalRecorder {
    origin: Instant,
    length: Duration,
    /// Index of the interval `current` holds.
    index: u64,
    current: Histogram<u64>,
    done: Vec<EncodedInterval>,
    serializer: V2DeflateSerializer,
    error: Option<String>,
}

impl IntervalRecorder {
    pub fn new(origin: Instant, length: Duration) -> IntervalRecorder {
        IntervalRecorder {
            origin,
            length: length.max(Duration::from_millis(1)),
            index: 0,
            current: new_histogram(),
            done: Vec::new(),
            serializer: V2DeflateSerializer::new(),
            error: None,
        }
    }

    fn index_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        (since.as_nanos() / self.length.as_nanos()) as u64
    }

    /// Records `value` (µs) in the interval holding `at`, closing earlier intervals first.
    /// Intervals with no replies are kept, empty, so a stall shows up in the log.
    pub fn record(&mut self, at: Instant, value: u64) {
        let index = self.index_of(at);
        while self.index < index {
            self.close(self.length);
        }
        put(&mut self.current, value);
    }

    fn start_of(&self, index: u64) -> Duration {
        let nanos = u64::try_from(self.length.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos.saturating_mul(index))
    }

    fn close(&mut self, length: Duration) {
        let mut bytes = Vec::new();
        if let Err(e) = self.serializer.serialize(&self.current, &mut bytes) {
            self.error
                .get_or_insert_with(|| format!("latency log interval not encoded: {e:?}"));
        }
        let start = self.start_of(self.index);
        self.done.push(EncodedInterval {
            start,
            length,
            v2_deflate: bytes,
        });
        self.current.reset();
        self.index += 1;
    }

    /// Closes the last interval at `end` (it may be shorter than the rest) and returns them all,
    /// with the first encoding error if any.
    pub fn finish(&mut self, end: Instant) -> (Vec<EncodedInterval>, Option<String>) {
        let last = self.index_of(end);
        while self.index < last {
            self.close(self.length);
        }
        let start = self.start_of(self.index);
        let tail = end
            .saturating_duration_since(self.origin)
            .saturating_sub(start);
        if !self.current.is_empty() || !tail.is_zero() {
            self.close(tail);
        }
        (std::mem::take(&mut self.done), self.error.take())
    }
}

/// Writes intervals as an HdrHistogram interval log; `started` is the wall-clock time of the
/// measured window's start, written as both StartTime and BaseTime so interval timestamps read
/// as seconds into the run.
pub fn write_log(
    out: &mut impl Write,
    intervals: &[EncodedInterval],
    started: SystemTime,
    comment: &str,
) -> anyhow::Result<()> {
    let log = Log {
        intervals,
        started,
        comments: &[comment.to_string()],
        parts: &BTreeMap::new(),
    };
    write_full(out, &log)
}

/// Everything a driver's log holds.
pub struct Log<'a> {
    /// The latency, one untagged histogram per interval.
    pub intervals: &'a [EncodedInterval],
    /// Wall-clock start of the measured window.
    pub started: SystemTime,
    /// Comment lines, without their `#`; the first says what wrote the log.
    pub comments: &'a [String],
    /// Whole-run histograms, each written as one interval tagged with its name and spanning
    /// the run: tools that read only untagged intervals see the latency alone.
    pub parts: &'a BTreeMap<String, Histogram<u64>>,
}

/// Writes `log` as an HdrHistogram interval log.
pub fn write_full(out: &mut impl Write, log: &Log) -> anyhow::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    for comment in log.comments {
        builder.add_comment(comment);
    }
    let mut writer = builder
        .add_comment("values are latencies in microseconds, from the intended send time")
        .with_start_time(log.started)
        .with_base_time(log.started)
        .begin_log_with(out, &mut serializer)
        .context("cannot write the latency log header")?;
    for interval in log.intervals {
        let h = interval.decode()?;
        writer
            .write_histogram(&h, interval.start, interval.length, None)
            .map_err(|e| anyhow::anyhow!("cannot write a latency log interval: {e}"))?;
    }
    let span = log
        .intervals
        .last()
        .map_or(Duration::ZERO, |i| i.start + i.length);
    for (name, h) in log.parts {
        let tag = Tag::new(name).with_context(|| format!("{name:?} cannot be a log tag"))?;
        writer
            .write_histogram(h, Duration::ZERO, span, Some(tag))
            .map_err(|e| anyhow::anyhow!("cannot write the {name} histogram: {e}"))?;
    }
    Ok(())
}

/// What [`read_full`] found in one log.
pub struct LogRead {
    /// The untagged intervals added up.
    pub latency: Histogram<u64>,
    /// Untagged intervals read.
    pub intervals: usize,
    /// Tagged intervals added up per tag.
    pub parts: BTreeMap<String, Histogram<u64>>,
    /// The log's StartTime, when it has one.
    pub started: Option<SystemTime>,
    /// Comment lines, without their `#`.
    pub comments: Vec<String>,
}

/// Reads every untagged interval of one interval log into one histogram.
///
/// Tagged intervals belong to some other series (the log format allows several per file), so
/// they are skipped, and a log with nothing untagged is an error rather than an empty result.
pub fn read_log(text: &[u8]) -> anyhow::Result<(Histogram<u64>, usize)> {
    let log = read_full(text)?;
    Ok((log.latency, log.intervals))
}

/// Reads one interval log: the untagged intervals as the latency, the tagged ones per tag.
pub fn read_full(text: &[u8]) -> anyhow::Result<LogRead> {
    let mut log = LogRead {
        latency: new_histogram(),
        intervals: 0,
        parts: BTreeMap::new(),
        started: None,
        comments: String::from_utf8_lossy(text)
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.starts_with('['))
            .map(str::to_string)
            .collect(),
    };
    let mut tagged = 0;
    for entry in IntervalLogIterator::new(text) {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("not an HdrHistogram interval log: {e:?}"))?;
        let interval = match entry {
            LogEntry::Interval(interval) => interval,
            LogEntry::StartTime(since_epoch) => {
                log.started = Some(SystemTime::UNIX_EPOCH + since_epoch);
                continue;
            }
            LogEntry::BaseTime(_) => continue,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .with_context(|| {
                format!(
                    "interval at {:?} is not valid base64",
                    interval.start_timestamp()
                )
            })?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| anyhow::anyhow!("interval histogram does not decode: {e:?}"))?;
        let sum = match interval.tag() {
            Some(tag) => {
                tagged += 1;
                log.parts
                    .entry(tag.as_str().to_string())
                    .or_insert_with(new_histogram)
            }
            None => {
                log.intervals += 1;
                &mut log.latency
            }
        };
        sum.add(&h)
            .map_err(|e| anyhow::anyhow!("cannot add an interval histogram: {e:?}"))?;
    }
    if log.intervals == 0 {
        if tagged > 0 {
            bail!("the log holds only tagged intervals ({tagged}); merge reads untagged ones");
        }
        bail!("the log holds no intervals");
    }
    Ok(log)
}

/// Adds the untagged intervals of every file into one histogram; returns it with the number
/// of intervals read.
pub fn merge_files(files: &[impl AsRef<Path>]) -> anyhow::Result<(Histogram<u64>, usize)> {
    let mut total = new_histogram();
    let mut intervals = 0;
    for file in files {
        let path = file.as_ref();
        let text =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (h, n) = read_log(&text).with_context(|| format!("in {}", path.display()))?;
        total
            .add(&h)
            .map_err(|e| anyhow::anyhow!("cannot add {}: {e:?}", path.display()))?;
        intervals += n;
    }
    Ok((total, intervals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Summary;

    fn log_of(values: &[u64], per_interval: usize) -> Vec<u8> {
        let origin = Instant::now();
        let mut rec = IntervalRecorder::new(origin, Duration::from_secs(1));
        for (i, v) in values.iter().enumerate() {
            let at = origin + Duration::from_secs((i / per_interval) as u64);
            rec.record(at, *v);
        }
        let end = origin + Duration::from_millis(1500 * values.len() as u64 / per_interval as u64);
        let (intervals, err) = rec.finish(end);
        assert!(err.is_none());
        let mut out = Vec::new();
        write_log(&mut out, &intervals, SystemTime::now(), "test").unwrap();
        out
    }

    #[test]
    fn merging_logs_equals_one_histogram_of_all_samples() {
        let a: Vec<u64> = (0..5000).map(|i| 50 + (i * 7919) % 20_000).collect();
        let b: Vec<u64> = (0..3000).map(|i| 1000 + (i * 104_729) % 900_000).collect();
        let dir = tempfile::tempdir().unwrap();
        let (pa, pb) = (dir.path().join("a.hlog"), dir.path().join("b.hlog"));
        std::fs::write(&pa, log_of(&a, 700)).unwrap();
        std::fs::write(&pb, log_of(&b, 400)).unwrap();
        let (merged, intervals) = merge_files(&[&pa, &pb]).unwrap();
        assert!(intervals >= 8 + 8, "{intervals} intervals");
        let mut all = new_histogram();
        for v in a.iter().chain(&b) {
            all.record(*v).unwrap();
        }
        assert_eq!(merged.len(), 8000);
        assert_eq!(Summary::of(&merged), Summary::of(&all));
    }

    #[test]
    fn empty_gaps_and_short_last_interval_are_kept() {
        let origin = Instant::now();
        let mut rec = IntervalRecorder::new(origin, Duration::from_secs(1));
        rec.record(origin, 10);
        rec.record(origin + Duration::from_millis(3200), 20);
        let (intervals, _) = rec.finish(origin + Duration::from_millis(3500));
        let starts: Vec<u64> = intervals
            .iter()
            .map(|i| i.start.as_millis() as u64)
            .collect();
        assert_eq!(starts, [0, 1000, 2000, 3000]);
        assert_eq!(intervals[3].length, Duration::from_millis(500));
        assert_eq!(intervals[1].decode().unwrap().len(), 0);
        assert_eq!(intervals[3].decode().unwrap().len(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_log() {
        assert!(read_log(b"hello, world\n").is_err());
        assert!(read_log(b"#only a comment\n").is_err());
        assert!(read_log(b"Tag=x,0.1,1.0,2.0,HISTFAAAAB\n").is_err());
        assert!(read_log(b"0.1,1.0,2.0,!!notbase64!!\n").is_err());
    }
}
