//! The report: the HTML it renders from synthetic sweeps, the verdicts.csv beside it, and the
//! USL fit (the verdicts themselves are tested in tests/verdicts.rs).

use std::path::Path;
use std::process::Command;

use threadcenter::record::Row;
use threadcenter::report::simulate::synthetic_row;
use threadcenter::report::{self, usl, Comparison, ReportOptions, DEFAULT_EQUIVALENCE};

/// A valid row whose derived columns are consistent with `throughput`.
fn row(kernel: &str, backend: &str, workers: u32, size: u64, rep: u32, throughput: f64) -> Row {
    let single_job_us = size as f64 / 100.0;
    let duration_s = 2.0;
    let ideal = f64::from(workers.min(4)) / single_job_us * 1e6;
    Row {
        connections: 8,
        depth: 2,
        requests: (throughput * duration_s).round() as u64,
        duration_s,
        lat_p50_us: 16.0 * 1e6 / throughput,
        lat_p90_us: 20.0 * 1e6 / throughput,
        lat_p99_us: 30.0 * 1e6 / throughput,
        lat_p999_us: 40.0 * 1e6 / throughput,
        lat_max_us: 50.0 * 1e6 / throughput,
        queue_p50_us: 8.0 * 1e6 / throughput,
        compute_p50_us: single_job_us,
        server_cpu_s: duration_s * f64::from(workers.min(4)),
        server_rss_kib: 4096 * u64::from(workers),
        client_cpu_s: 0.2,
        efficiency: throughput / ideal,
        lat_mean_us: 17.0 * 1e6 / throughput,
        server_p50_us: 8.0 * 1e6 / throughput + single_job_us + 30.0,
        transport_p50_us: 30.0,
        server_user_s: 1.5,
        server_sys_s: 0.5,
        server_minflt: 1000,
        server_vcsw: 500,
        server_ivcsw: 50,
        tlb_shootdowns: Some(42),
        single_job_us,
        cores: 4,
        server_start_ms: 5.0,
        started_at: 1_700_000_000,
        tail_s: 0.0,
        service_us: single_job_us,
        ..synthetic_row(kernel, backend, workers, size, rep, throughput)
    }
}

/// Repetitions of one backend at one grid point with the given throughputs.
fn reps(kernel: &str, backend: &str, workers: u32, size: u64, tputs: &[f64]) -> Vec<Row> {
    tputs
        .iter()
        .enumerate()
        .map(|(i, &t)| row(kernel, backend, workers, size, i as u32, t))
        .collect()
}

/// The comparisons at the default margin.
fn verdicts(rows: &[Row]) -> Vec<Comparison> {
    report::verdicts(rows, DEFAULT_EQUIVALENCE)
}

fn render(rows: &[Row], env: Option<&serde_json::Value>) -> String {
    report::render(rows, env, &ReportOptions::default()).expect("render")
}

#[test]
fn usl_fit_recovers_known_coefficients() {
    let (lambda, sigma, kappa) = (800.0, 0.1, 0.005);
    let pts: Vec<(f64, f64)> = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
        .iter()
        .map(|&n: &f64| {
            (
                n,
                lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)),
            )
        })
        .collect();
    let f = usl::fit(&pts).expect("fit");
    assert!((f.sigma - sigma).abs() < 2e-3, "{f:?}");
    assert!((f.kappa - kappa).abs() < 2e-4, "{f:?}");
    assert!((f.lambda - lambda).abs() < 2.0, "{f:?}");
}

/// A small but complete sweep: two kernels, three worker counts, two sizes, all four backends.
fn sweep() -> Vec<Row> {
    let mut rows = Vec::new();
    for (kernel, thread_scale) in [("fib", 1.0), ("gil", 0.4)] {
        for size in [1000u64, 100_000] {
            for workers in [1u32, 2, 4] {
                let base = 1e6 / (size as f64 / 100.0) * f64::from(workers);
                for (backend, f) in [
                    ("process", 0.95),
                    ("prefork", 1.0),
                    ("rayon", thread_scale),
                    ("tokio", thread_scale * 0.97),
                ] {
                    let t = base * f;
                    rows.extend(reps(
                        kernel,
                        backend,
                        workers,
                        size,
                        &[t, t * 1.01, t * 0.99],
                    ));
                }
            }
        }
    }
    let mut bad = row("gil", "tokio", 4, 1000, 3, 5.0);
    bad.valid = false;
    bad.reason = "<script>alert(1)</script> errors".into();
    rows.push(bad);
    rows
}

fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "@import",
        "url(",
        "<script",
        "<link",
    ] {
        assert!(
            !lower.contains(bad),
            "report references an external resource: {bad}"
        );
    }
}

#[test]
fn render_is_deterministic_complete_and_self_contained() {
    let rows = sweep();
    let env = serde_json::json!({
        "cpu_model": "Test CPU <x>",
        "cores": 4,
        "grid": {"workers": [1, 2, 4], "repeat": 3, "duration": 1.5},
        "calibration": {"fib|50us": {"n": 77, "target_us": 50.0, "single_us": 49.5, "mix_sizes": []}},
    });
    let a = render(&rows, Some(&env));
    let b = render(&rows, Some(&env));
    assert!(a == b, "two renders of the same rows differ");

    // The first screen: the overview map is the first figure, before the verdict list.
    let map = a
        .find("<figure class=\"chart heatmap\"><svg")
        .expect("overview map");
    assert_eq!(a.find("<figure"), Some(map), "the map opens the report");
    let list = a.find("<h2>1. Verdicts: process ÷ best thread backend</h2>");
    assert!(list.is_some_and(|l| l > map), "verdict list after the map");
    let methods = a
        .find("<h2>2. How the verdicts are computed</h2>")
        .expect("methods");
    assert!(a[methods..].contains("Welch"), "methods name the interval");
    assert!(
        a[methods..].contains("Measured by simulation"),
        "methods quote the simulated rates"
    );

    for kind in ["throughput", "heatmap", "latency", "efficiency", "split"] {
        let marker = format!("<figure class=\"chart {kind}\"><svg");
        assert!(a.contains(&marker), "no {kind} chart");
    }
    // Labels are real SVG text, not paths: the browser renders them without font files.
    assert!(
        a.replace('\n', "").contains(">workers</text>"),
        "axis label missing"
    );
    // gil: process is 2.4x the best thread backend, rayon; fib: rayon beats process.
    assert!(
        a.contains(
            "<td>gil</td><td>n=1000 (≈10 µs)</td><td class=\"n\">4</td>\
             <td class=\"n\">8×2</td><td class=\"n\">2.375</td>"
        ),
        "gil's verdict row missing"
    );
    assert!(a.contains("<span class=\"verdict-process\">process wins</span></td><td>rayon</td>"));
    assert!(a.contains("<span class=\"verdict-threads\">threads win</span>"));
    assert!(
        a.contains("Test CPU &lt;x&gt;"),
        "env value not shown escaped"
    );
    // env.json's nested values are tables, not JSON.
    assert!(
        !a.contains("{&quot;") && !a.contains("[1,2,4]"),
        "raw JSON shown"
    );
    assert!(a.contains("<h3>Calibration</h3>") && a.contains(">49.5 µs</td>"));
    assert!(a.contains("<td>measured time per cell</td><td>1.5 s</td>"));
    assert!(a.contains("class=\"data\""), "data table missing");
    assert!(a.contains("class=\"invalid\""), "invalid row not marked");
    assert!(
        a.contains("&lt;script&gt;alert(1)&lt;/script&gt; errors"),
        "reason not escaped"
    );
    assert!(
        a.contains("<h3>prefork ÷ thread backends</h3>"),
        "prefork table missing"
    );
    assert!(
        a.contains("<td>process</td><td class=\"n\">9</td>"),
        "resource table missing"
    );
    assert_self_contained(&a);

    let without_env = render(&rows, None);
    assert!(without_env.contains("No env.json was found"));
}

#[test]
fn usl_table_says_when_there_are_too_few_worker_counts() {
    let mut rows = reps("fib", "process", 1, 100, &[100.0, 101.0]);
    rows.extend(reps("fib", "process", 2, 100, &[190.0, 191.0]));
    rows.extend(reps("fib", "rayon", 1, 100, &[100.0, 99.0]));
    rows.extend(reps("fib", "rayon", 2, 100, &[180.0, 181.0]));
    let html = render(&rows, None);
    assert!(html.contains("Not enough worker counts to fit"));
    assert!(html.contains("at least 4 distinct worker counts, and this sweep has at most 2"));
}

fn write_csv(path: &Path, rows: &[Row]) {
    let mut w = csv::Writer::from_path(path).expect("create csv");
    for r in rows {
        w.serialize(r).expect("write row");
    }
    w.flush().expect("flush");
}

#[test]
fn write_report_refuses_a_foreign_csv_and_keeps_the_old_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("other.csv");
    std::fs::write(&csv, "name,value\nx,1\n").expect("write");
    let out = dir.path().join("report.html");
    std::fs::write(&out, "previous good report").expect("write");
    let err = report::write_report(&csv, None, &out).expect_err("must refuse");
    assert!(
        format!("{err:#}").contains("not a threadcenter sweep CSV"),
        "{err:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "previous good report"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn write_report_reads_env_json_beside_the_csv_and_regenerates_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("results.csv");
    write_csv(&csv, &sweep());
    std::fs::write(
        dir.path().join("env.json"),
        r#"{"cpu_model":"Beside CPU","cores":4}"#,
    )
    .expect("write env");
    let (a, b) = (dir.path().join("a.html"), dir.path().join("b.html"));
    report::write_report(&csv, None, &a).expect("report a");
    report::write_report(&csv, None, &b).expect("report b");
    let html = std::fs::read(&a).expect("read a");
    assert_eq!(html, std::fs::read(&b).expect("read b"));
    assert!(String::from_utf8_lossy(&html).contains("Beside CPU"));

    let missing = dir.path().join("nope.json");
    assert!(report::write_report(&csv, Some(&missing), &a).is_err());
}

#[test]
fn the_binary_writes_a_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("results.csv");
    write_csv(&csv, &sweep());
    let out = dir.path().join("report.html");
    let status = Command::new(env!("CARGO_BIN_EXE_threadcenter-bench"))
        .args(["report", "--input"])
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run threadcenter-bench");
    assert!(status.success(), "{status}");
    let html = std::fs::read_to_string(&out).expect("read report");
    assert!(html.contains("No env.json was found"));
    assert_eq!(html, render(&sweep(), None));

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_threadcenter-bench"))
        .args(["report", "--input"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run threadcenter-bench");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a threadcenter sweep CSV"));
}

#[test]
fn degenerate_inputs_render_with_explanations_instead_of_failing() {
    let empty = render(&[], None);
    assert!(empty.contains("No valid rows: nothing to chart."));
    assert!(empty.contains("there is no verdict"));

    let single = render(&[row("fib", "process", 1, 10, 0, 100.0)], None);
    assert!(single.contains("<figure class=\"chart throughput\"><svg"));
    assert!(single.contains("there is no verdict"));

    let mut odd = reps("fib", "process", 2, 10, &[100.0, 110.0]);
    odd.extend(reps("fib", "rayon", 2, 10, &[0.0, 0.0]));
    for r in &mut odd {
        r.lat_p50_us = f64::NAN;
        r.lat_p99_us = f64::INFINITY;
        r.single_job_us = 0.0;
        r.tlb_shootdowns = None;
    }
    let html = render(&odd, None);
    assert!(html.contains("Chart not drawn: no latencies"));
    assert!(verdicts(&odd).is_empty(), "a zero denominator has no ratio");

    let mut all_invalid = reps("fib", "process", 2, 10, &[100.0]);
    all_invalid[0].valid = false;
    let html = render(&all_invalid, None);
    assert!(html.contains("1 of 1 rows are invalid"));
    assert!(html.contains("(no reason given)"));
}

#[test]
fn verdicts_csv_is_written_beside_the_report_with_the_contract_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("results.csv");
    write_csv(&csv, &sweep());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    report::write_report(&csv, None, &out.join("report.html")).expect("report");
    let path = out.join(report::VERDICTS_CSV);
    let text = std::fs::read_to_string(&path).expect("verdicts.csv beside the report");
    assert_eq!(
        text.lines().next(),
        Some(report::compare::COLUMNS.join(",").as_str())
    );
    let read = report::compare::read_csv(&path).expect("read back");
    assert_eq!(read, verdicts(&sweep()));
    // 2 kernels × 2 sizes × 3 worker counts × 2 challengers × (rayon, tokio, best thread).
    assert_eq!(read.len(), 72);
    let allowed = ["process wins", "threads win", "equivalent", "inconclusive"];
    let mut rdr = csv::Reader::from_path(&path).expect("csv");
    let at = rdr.headers().unwrap().iter().position(|h| h == "verdict");
    for rec in rdr.records() {
        let rec = rec.expect("record");
        assert!(allowed.contains(&&rec[at.unwrap()]), "{rec:?}");
    }
}

/// Checked calibration: a size whose measured service time is more than 25 % off its target
/// is marked in the target-vs-measured table and beside its verdicts; one on target is not.
#[test]
fn sizes_measured_far_from_their_target_are_marked() {
    let mut rows = Vec::new();
    for (kernel, service) in [("fib", 1020.0), ("table", 480.0)] {
        for (backend, f) in [("process", 1.2), ("rayon", 1.0)] {
            for mut r in reps(
                kernel,
                backend,
                2,
                5000,
                &[1000.0 * f, 1010.0 * f, 990.0 * f],
            ) {
                r.target_us = Some(1000.0);
                r.service_us = service;
                rows.push(r);
            }
        }
    }
    let html = render(&rows, None);
    assert!(html.contains("Service time: target vs measured"));
    assert!(html.contains("1 of 2 sizes are off"));
    assert!(html.contains("1 ms (n=5000) ⚠ measured 480 µs"));
    assert!(!html.contains("⚠ measured 1.02 ms"));
    assert_eq!(html, render(&rows, None));
}

/// CSVs written before `service_us` existed read it as NaN, and their report checks the
/// calibration against `single_job_us`, the same measurement.
#[test]
fn old_csvs_without_service_us_still_read_and_render() {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small_sweep.csv");
    let rows = threadcenter::record::read_csv(&csv).expect("read");
    assert!(rows.iter().all(|r| r.service_us.is_nan()));
    let html = render(&rows, None);
    assert!(
        html.contains("0 of 4 sizes are off"),
        "calibration not checked"
    );
}

/// The scripts' fixture verdicts (tests/fixtures/*.verdicts.csv) are what `report` writes for
/// the fixture CSVs; regenerate them with `threadcenter-bench report --input
/// tests/fixtures/NAME.csv --out DIR/report.html` and copy DIR/verdicts.csv.
#[test]
fn the_scripts_fixture_verdicts_are_what_report_writes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["small_sweep", "small_sweep_b"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("report.html");
        report::write_report(&fixtures.join(format!("{name}.csv")), None, &out).expect("report");
        let written = std::fs::read_to_string(dir.path().join("verdicts.csv")).expect("written");
        let kept = std::fs::read_to_string(fixtures.join(format!("{name}.verdicts.csv")))
            .expect("fixture");
        assert!(written == kept, "{name}.verdicts.csv is stale");
    }
}

/// The resource table's busy share is the server's and the driver's CPU over the load runs'
/// core-seconds, drain tails included: the figure that tells a backend ahead on idle cores
/// from one ahead on cheaper requests.
#[test]
fn the_resource_table_says_how_busy_the_cores_were() {
    // Per row: server 4 s (2 workers), driver 0.2 s, over 2 s on 4 cores: 52.5 %; with a
    // 0.5 s drain tail the same CPU is spread over 2.5 s: 42 %.
    let mut rows = reps("fib", "rayon", 2, 1000, &[1000.0, 1010.0, 990.0]);
    for mut r in reps("fib", "tokio", 2, 1000, &[1000.0, 1010.0, 990.0]) {
        r.tail_s = 0.5;
        rows.push(r);
    }
    let html = render(&rows, None);
    let section = html
        .split("<section id=\"resources\">")
        .nth(1)
        .and_then(|s| s.split("</section>").next())
        .expect("a resources section");
    let row_of = |backend: &str| {
        section
            .split("<tr")
            .find(|r| r.contains(&format!("<td>{backend}</td>")))
            .unwrap_or_else(|| panic!("no {backend} row in {section}"))
            .to_string()
    };
    assert!(section.contains("<th>cores busy %</th>"), "{section}");
    assert!(
        row_of("rayon").contains(">52.5</td>"),
        "{}",
        row_of("rayon")
    );
    assert!(
        row_of("tokio").contains(">42.0</td>"),
        "{}",
        row_of("tokio")
    );
}

/// The methods section simulates the pairs of repetition counts the comparisons have: process
/// with 2 valid repetitions against rayon with 15 is simulated as 2/15, not as 2/2, and with
/// one side noisier than the other as well as with equal noise.
#[test]
fn the_methods_simulate_the_comparisons_own_repetition_pairs() {
    let process: Vec<f64> = (0..2).map(|i| 200.0 + f64::from(i)).collect();
    let rayon: Vec<f64> = (0..15).map(|i| 100.0 + f64::from(i % 3)).collect();
    let mut rows = reps("fib", "process", 2, 1000, &process);
    rows.extend(reps("fib", "rayon", 2, 1000, &rayon));
    let html = render(&rows, None);
    let methods = &html[html.find("How the verdicts are computed").expect("methods")..];
    let methods = &methods[..methods.find("<h2").unwrap_or(methods.len())];
    assert!(methods.contains(">2/15</td>"), "{methods}");
    assert!(!methods.contains(">2</td>"), "{methods}");
    assert!(methods.contains("coverage with unequal noise"), "{methods}");
}
