//! The report: verdicts on synthetic sweeps with known answers, and the HTML it renders.

use std::path::Path;
use std::process::Command;

use threadcenter::record::Row;
use threadcenter::report::{self, usl, Outcome};

/// A valid row whose derived columns are consistent with `throughput`.
fn row(kernel: &str, backend: &str, workers: u32, size: u64, rep: u32, throughput: f64) -> Row {
    let single_job_us = size as f64 / 100.0;
    let duration_s = 2.0;
    let requests = (throughput * duration_s).round() as u64;
    let ideal = f64::from(workers.min(4)) / single_job_us * 1e6;
    Row {
        kernel: kernel.into(),
        backend: backend.into(),
        workers,
        connections: 8,
        depth: 2,
        size,
        repetition: rep,
        requests,
        errors: 0,
        duration_s,
        throughput_rps: throughput,
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
        valid: true,
        reason: String::new(),
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
        target_us: None,
        cores: 4,
        rate: 0.0,
        achieved_rps: throughput,
        server_start_ms: 5.0,
        started_at: 1_700_000_000,
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

#[test]
fn process_clearly_faster_wins_with_an_interval_above_one() {
    let mut rows = reps(
        "gil",
        "process",
        4,
        20_000,
        &[400.0, 402.0, 398.0, 401.0, 399.0],
    );
    rows.extend(reps(
        "gil",
        "rayon",
        4,
        20_000,
        &[200.0, 201.0, 199.0, 200.5, 199.5],
    ));
    rows.extend(reps(
        "gil",
        "tokio",
        4,
        20_000,
        &[150.0, 151.0, 149.0, 150.0, 150.0],
    ));
    let v = report::verdicts(&rows);
    assert_eq!(v.len(), 1);
    let v = &v[0];
    assert_eq!(v.outcome, Outcome::ProcessWins);
    assert_eq!(v.best_thread, "rayon");
    assert!(v.lo > 1.0 && v.lo <= v.ratio && v.ratio <= v.hi, "{v:?}");
    assert!((v.ratio - 2.0).abs() < 0.01, "{v:?}");
    assert_eq!((v.n_process, v.n_thread), (5, 5));
    let s = v.sentence();
    assert!(
        s.starts_with("gil: process beats the best thread backend (rayon) by 2.00x ["),
        "{s}"
    );
    assert!(s.contains("at 4 workers, size 20000"), "{s}");
}

#[test]
fn overlapping_throughputs_are_a_tie() {
    let mut rows = reps(
        "fib",
        "process",
        2,
        1000,
        &[100.0, 110.0, 90.0, 105.0, 95.0],
    );
    rows.extend(reps(
        "fib",
        "rayon",
        2,
        1000,
        &[102.0, 92.0, 108.0, 97.0, 103.0],
    ));
    let v = &report::verdicts(&rows)[0];
    assert_eq!(v.outcome, Outcome::Tie);
    assert!(v.lo < 1.0 && v.hi > 1.0, "{v:?}");
    assert!(v.sentence().contains("tie"), "{}", v.sentence());
}

#[test]
fn thread_clearly_faster_wins_and_the_best_thread_backend_is_chosen() {
    let mut rows = reps("shared", "process", 2, 1000, &[50.0, 51.0, 49.0]);
    rows.extend(reps("shared", "rayon", 2, 1000, &[80.0, 81.0, 79.0]));
    rows.extend(reps("shared", "tokio", 2, 1000, &[100.0, 101.0, 99.0]));
    let v = &report::verdicts(&rows)[0];
    assert_eq!(v.outcome, Outcome::ThreadWins);
    assert_eq!(v.best_thread, "tokio");
    assert!(v.hi < 1.0, "{v:?}");
    assert!(
        v.sentence()
            .contains("the best thread backend (tokio) beats process by 2.00x"),
        "{}",
        v.sentence()
    );
}

#[test]
fn bootstrap_interval_contains_the_true_ratio() {
    // Process is exactly 1.5x rayon; each side carries the same ±0.5 % jitter.
    let jitter = [1.0, 1.005, 0.995, 1.002, 0.998, 1.003, 0.997];
    let p: Vec<f64> = jitter.iter().map(|j| 300.0 * j).collect();
    let t: Vec<f64> = jitter.iter().rev().map(|j| 200.0 * j).collect();
    let mut rows = reps("tlb", "process", 3, 500, &p);
    rows.extend(reps("tlb", "rayon", 3, 500, &t));
    let v = &report::verdicts(&rows)[0];
    assert!(v.lo <= 1.5 && 1.5 <= v.hi, "{v:?}");
    assert!(
        v.hi - v.lo < 0.05,
        "interval too wide for 0.5% noise: {v:?}"
    );
}

#[test]
fn one_repetition_calls_it_from_the_point_estimate_without_an_interval() {
    let mut rows = reps("fault", "process", 2, 100, &[130.0]);
    rows.extend(reps("fault", "rayon", 2, 100, &[100.0]));
    let v = &report::verdicts(&rows)[0];
    assert_eq!(v.outcome, Outcome::ProcessWins);
    assert!(!v.has_interval());
    assert!(
        v.sentence().contains("(1 rep, no interval)"),
        "{}",
        v.sentence()
    );
}

#[test]
fn invalid_rows_do_not_count() {
    let mut rows = reps("fib", "process", 2, 100, &[100.0, 101.0]);
    rows.extend(reps("fib", "rayon", 2, 100, &[100.0, 99.0]));
    let mut bogus = row("fib", "process", 2, 100, 2, 1e9);
    bogus.valid = false;
    bogus.reason = "driver saturated".into();
    rows.push(bogus);
    let v = &report::verdicts(&rows)[0];
    assert_eq!(v.n_process, 2);
    assert!(v.ratio < 1.1, "{v:?}");
}

#[test]
fn prefork_gets_its_own_ratio() {
    let mut rows = reps("tlb", "process", 2, 100, &[100.0, 101.0]);
    rows.extend(reps("tlb", "rayon", 2, 100, &[100.0, 99.0]));
    rows.extend(reps("tlb", "prefork", 2, 100, &[300.0, 301.0]));
    let v = &report::verdicts(&rows)[0];
    let p = v.prefork.as_ref().expect("prefork ratio");
    assert!((p.ratio - 3.0).abs() < 0.05 && p.lo > 1.0, "{p:?}");
    assert!((v.ratio - 1.0).abs() < 0.05, "{v:?}");
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
    let env = serde_json::json!({"cpu_model": "Test CPU <x>", "cores": 4, "grid": {"workers": [1, 2, 4]}});
    let a = report::render(&rows, Some(&env)).expect("render");
    let b = report::render(&rows, Some(&env)).expect("render");
    assert!(a == b, "two renders of the same rows differ");

    for kind in ["throughput", "heatmap", "latency", "efficiency", "split"] {
        let marker = format!("<figure class=\"chart {kind}\"><svg");
        assert!(a.contains(&marker), "no {kind} chart");
    }
    // Labels are real SVG text, not paths: the browser renders them without font files.
    assert!(
        a.replace('\n', "").contains(">workers</text>"),
        "axis label missing"
    );
    assert!(
        a.contains("gil: process beats the best thread backend (rayon) by"),
        "verdict sentence missing"
    );
    assert!(a.contains("fib: "), "fib summary missing");
    assert!(
        a.contains("Test CPU &lt;x&gt;"),
        "env value not shown escaped"
    );
    assert!(a.contains("class=\"data\""), "data table missing");
    assert!(a.contains("class=\"invalid\""), "invalid row not marked");
    assert!(
        a.contains("&lt;script&gt;alert(1)&lt;/script&gt; errors"),
        "reason not escaped"
    );
    assert!(
        a.contains("Prefork ÷ best thread backend"),
        "prefork table missing"
    );
    assert!(
        a.contains("<td>process</td><td class=\"n\">9</td>"),
        "resource table missing"
    );
    assert_self_contained(&a);

    let without_env = report::render(&rows, None).expect("render");
    assert!(without_env.contains("No env.json was found"));
}

#[test]
fn usl_table_says_when_there_are_too_few_worker_counts() {
    let mut rows = reps("fib", "process", 1, 100, &[100.0, 101.0]);
    rows.extend(reps("fib", "process", 2, 100, &[190.0, 191.0]));
    rows.extend(reps("fib", "rayon", 1, 100, &[100.0, 99.0]));
    rows.extend(reps("fib", "rayon", 2, 100, &[180.0, 181.0]));
    let html = report::render(&rows, None).expect("render");
    assert!(html.contains("fit needs ≥3 worker counts (have 2)"));
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
    assert_eq!(html, report::render(&sweep(), None).expect("render"));

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
    let empty = report::render(&[], None).expect("empty");
    assert!(empty.contains("No valid rows: nothing to chart."));
    assert!(empty.contains("there is no verdict"));

    let single = report::render(&[row("fib", "process", 1, 10, 0, 100.0)], None).expect("one row");
    assert!(single.contains("<figure class=\"chart throughput\"><svg"));
    assert!(single.contains("no grid point of fib has both process and a thread backend"));

    let mut odd = reps("fib", "process", 2, 10, &[100.0, 110.0]);
    odd.extend(reps("fib", "rayon", 2, 10, &[0.0, 0.0]));
    for r in &mut odd {
        r.lat_p50_us = f64::NAN;
        r.lat_p99_us = f64::INFINITY;
        r.single_job_us = 0.0;
        r.tlb_shootdowns = None;
    }
    let html = report::render(&odd, None).expect("odd values");
    assert!(html.contains("Chart not drawn: no latencies"));
    assert!(
        report::verdicts(&odd).is_empty(),
        "a zero denominator has no ratio"
    );

    let mut all_invalid = reps("fib", "process", 2, 10, &[100.0]);
    all_invalid[0].valid = false;
    let html = report::render(&all_invalid, None).expect("all invalid");
    assert!(html.contains("1 of 1 rows are invalid"));
    assert!(html.contains("(no reason given)"));
}
