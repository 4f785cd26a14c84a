//! One row of `results.csv`: one sweep cell, one repetition.
//!
//! The CSV is the product's main output and other people's scripts read it, so the column names
//! (SPEC §7) are a contract: rename nothing, add columns only at the end.

use serde::{Deserialize, Serialize};

/// A measured cell. Latencies are in microseconds, measured by the driver from each request's
/// intended send time; `queue_*`, `compute_*` and `server_*` come from the server's own timings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Workload kernel, or a weighted mix such as `fib:9,tlb:1`.
    pub kernel: String,
    /// `process`, `shm`, `rayon`, `tokio` or `prefork`.
    pub backend: String,
    /// Compute workers (processes or threads).
    pub workers: u32,
    /// Client connections.
    pub connections: u32,
    /// Requests in flight per connection.
    pub depth: u32,
    /// Work size `n` sent with every request.
    pub size: u64,
    /// Repetition index, 0-based.
    pub repetition: u32,
    /// Requests answered correctly during the measured window.
    pub requests: u64,
    /// Requests that got an error reply, a wrong result, or no reply.
    pub errors: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Correct replies per second over the measured window.
    pub throughput_rps: f64,
    pub lat_p50_us: f64,
    pub lat_p90_us: f64,
    pub lat_p99_us: f64,
    pub lat_p999_us: f64,
    pub lat_max_us: f64,
    /// Median time a job waited for a worker (server timing).
    pub queue_p50_us: f64,
    /// Median time inside the kernel (server timing).
    pub compute_p50_us: f64,
    /// CPU seconds (user + system) of the server and all its worker processes during the cell.
    pub server_cpu_s: f64,
    /// Peak resident memory summed over the server and its workers, KiB.
    pub server_rss_kib: u64,
    /// CPU seconds (user + system) of the load driver during the cell.
    pub client_cpu_s: f64,
    /// Throughput ÷ ideal, ideal = min(workers, cores) ÷ single-thread kernel time.
    pub efficiency: f64,
    /// False when the cell cannot be trusted; `reason` says why.
    pub valid: bool,
    /// Why the cell is invalid (empty when valid).
    pub reason: String,
    /// Mean response time, µs.
    pub lat_mean_us: f64,
    /// Median server time (frame read → reply encoded), µs.
    pub server_p50_us: f64,
    /// Median of `server − queue − compute`: dispatch, IPC and encoding inside the server, µs.
    pub transport_p50_us: f64,
    /// User CPU seconds of the server and its workers.
    pub server_user_s: f64,
    /// System CPU seconds of the server and its workers.
    pub server_sys_s: f64,
    /// Minor page faults of the server and its workers during the cell.
    pub server_minflt: u64,
    /// Voluntary context switches of the server and its workers during the cell.
    pub server_vcsw: u64,
    /// Involuntary context switches of the server and its workers during the cell.
    pub server_ivcsw: u64,
    /// TLB-shootdown interrupts on the whole machine during the cell (`TLB:` row of
    /// /proc/interrupts); empty where the system does not expose them.
    pub tlb_shootdowns: Option<u64>,
    /// Single-thread time of one job at this size, µs, measured in-process at sweep start.
    pub single_job_us: f64,
    /// The target service time this size was calibrated for, µs (empty when given as `n`).
    pub target_us: Option<f64>,
    /// Logical cores the server could use: the machine's, or its share of a CPU split.
    pub cores: u32,
    /// Open-loop target rate (requests/s); 0 for closed loop.
    pub rate: f64,
    /// Achieved request rate (sent per second) during the measured window.
    pub achieved_rps: f64,
    /// Server start-up time: spawn until `listening on`, ms (includes worker start and, for
    /// `table`, building each process's table).
    pub server_start_ms: f64,
    /// Unix time (seconds) when the cell started.
    pub started_at: u64,
    /// Seconds from the measured window's end to the last reply: the drain tail, which the
    /// throughput leaves out. NaN in CSVs written before the column existed.
    #[serde(default = "not_recorded")]
    pub tail_s: f64,
    /// Measured single-thread time of one job at this size, µs: the service time the cell
    /// actually asked for, to hold against `target_us`. The same measurement as
    /// `single_job_us`, under SPEC §7's name; NaN in CSVs written before it existed.
    #[serde(default = "not_recorded")]
    pub service_us: f64,
}

/// The value of a measurement a CSV predates.
fn not_recorded() -> f64 {
    f64::NAN
}

/// The columns SPEC §7 requires, in order; every sweep CSV begins with them.
pub const REQUIRED_COLUMNS: [&str; 23] = [
    "kernel",
    "backend",
    "workers",
    "connections",
    "depth",
    "size",
    "repetition",
    "requests",
    "errors",
    "duration_s",
    "throughput_rps",
    "lat_p50_us",
    "lat_p90_us",
    "lat_p99_us",
    "lat_p999_us",
    "lat_max_us",
    "queue_p50_us",
    "compute_p50_us",
    "server_cpu_s",
    "server_rss_kib",
    "client_cpu_s",
    "efficiency",
    "valid",
];

impl Row {
    /// The identity of a cell: everything but the measurements. `--resume` skips cells whose
    /// key is already in the CSV.
    pub fn cell_key(&self) -> CellKey {
        CellKey {
            kernel: self.kernel.clone(),
            backend: self.backend.clone(),
            workers: self.workers,
            connections: self.connections,
            depth: self.depth,
            size: self.size,
            repetition: self.repetition,
        }
    }
}

/// The grid coordinates of one measurement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub kernel: String,
    pub backend: String,
    pub workers: u32,
    pub connections: u32,
    pub depth: u32,
    pub size: u64,
    pub repetition: u32,
}

/// The header this version writes: every column of [`Row`], in order.
pub fn columns() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(Row::default())
        .expect("a row serializes into memory");
    let bytes = w.into_inner().expect("an in-memory writer flushes");
    csv::Reader::from_reader(bytes.as_slice())
        .headers()
        .expect("the header just written reads back")
        .iter()
        .map(str::to_string)
        .collect()
}

/// Refuses to append to the sweep CSV at `path` when its header is not [`columns`]: rows of
/// this version under another version's header would be read into the wrong columns.
pub fn check_appendable(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let theirs: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{} has no CSV header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let ours = columns();
    if theirs == ours {
        return Ok(());
    }
    let lacking: Vec<&str> = ours
        .iter()
        .filter(|c| !theirs.contains(c))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = theirs
        .iter()
        .filter(|c| !ours.contains(c))
        .map(String::as_str)
        .collect();
    let mut diff = Vec::new();
    if !lacking.is_empty() {
        diff.push(format!("it lacks {}", lacking.join(", ")));
    }
    if !extra.is_empty() {
        diff.push(format!(
            "it has {} that this version does not write",
            extra.join(", ")
        ));
    }
    if diff.is_empty() {
        diff.push("its columns are in another order".to_string());
    }
    anyhow::bail!(
        "{} was written by another version of threadcenter: {}; resuming would append rows \
         under the wrong columns, so start a new run instead",
        path.display(),
        diff.join(" and ")
    )
}

/// Reads a sweep CSV, checking that it has the required columns.
pub fn read_csv(path: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    use anyhow::Context;
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = rdr
        .headers()
        .with_context(|| format!("{} has no CSV header", path.display()))?
        .clone();
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !headers.iter().any(|h| h == *c))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} is not a threadcenter sweep CSV: missing column(s) {}",
            path.display(),
            missing.join(", ")
        );
    }
    let mut rows = Vec::new();
    for (i, rec) in rdr.deserialize().enumerate() {
        let row: Row = rec.with_context(|| format!("{}: bad row {}", path.display(), i + 2))?;
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_starts_with_the_contract_columns() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(sample()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        assert_eq!(&header[..REQUIRED_COLUMNS.len()], &REQUIRED_COLUMNS[..]);
    }

    #[test]
    fn rows_round_trip_through_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = csv::Writer::from_path(&path).unwrap();
        let mut b = sample();
        b.tlb_shootdowns = None;
        b.target_us = Some(1000.0);
        w.serialize(sample()).unwrap();
        w.serialize(&b).unwrap();
        w.flush().unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![sample(), b]);
    }

    #[test]
    fn a_csv_from_before_the_tail_column_reads_it_as_nan() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_sweep.csv");
        let rows = read_csv(&path).unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r.tail_s.is_nan()));
    }

    #[test]
    fn only_a_csv_with_this_versions_header_may_be_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = csv::Writer::from_path(&path).unwrap();
        w.serialize(sample()).unwrap();
        w.flush().unwrap();
        check_appendable(&path).unwrap();
        // The fixture predates `tail_s` and `service_us`.
        let old =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_sweep.csv");
        let err = check_appendable(&old).unwrap_err().to_string();
        assert!(err.contains("another version"), "{err}");
        assert!(err.contains("lacks tail_s, service_us"), "{err}");
    }

    #[test]
    fn a_csv_without_the_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("not a threadcenter sweep CSV"), "{err}");
    }

    pub(crate) fn sample() -> Row {
        Row {
            kernel: "fib".into(),
            backend: "process".into(),
            workers: 2,
            connections: 4,
            depth: 1,
            size: 500000,
            repetition: 0,
            requests: 100,
            errors: 0,
            duration_s: 1.0,
            throughput_rps: 100.0,
            lat_p50_us: 10.0,
            lat_p90_us: 11.0,
            lat_p99_us: 12.0,
            lat_p999_us: 13.0,
            lat_max_us: 14.0,
            queue_p50_us: 1.0,
            compute_p50_us: 8.0,
            server_cpu_s: 0.5,
            server_rss_kib: 4096,
            client_cpu_s: 0.1,
            efficiency: 0.9,
            valid: true,
            reason: String::new(),
            lat_mean_us: 10.5,
            server_p50_us: 9.0,
            transport_p50_us: 0.5,
            server_user_s: 0.4,
            server_sys_s: 0.1,
            server_minflt: 10,
            server_vcsw: 20,
            server_ivcsw: 3,
            tlb_shootdowns: Some(7),
            single_job_us: 8.0,
            target_us: None,
            cores: 2,
            rate: 0.0,
            achieved_rps: 100.0,
            server_start_ms: 3.0,
            started_at: 1_700_000_000,
            tail_s: 0.05,
            service_us: 8.0,
        }
    }
}
