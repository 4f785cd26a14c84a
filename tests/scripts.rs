//! The plotting scripts in `scripts/`, run as a user runs them: `python3 scripts/NAME.py` on the
//! fixture CSVs (two real quick sweeps), checking that every chart is written and that a bad CSV
//! is refused with a one-line message; and the benchmark scripts' shared round order. Needs
//! only python3 on PATH: the first run makes a virtual environment with
//! `scripts/requirements.txt` under `target/pyenv` (see `scripts/pyenv.rs`).

#[path = "scripts/pyenv.rs"]
mod pyenv;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The charts `plot_all.py` draws from one run.
const CHARTS: [&str; 4] = ["throughput", "ratio_heatmap", "latency", "latency_split"];
/// Every script that takes a CSV, with the extra arguments it needs besides the CSV and --out.
const SCRIPTS: [(&str, &[&str]); 6] = [
    ("throughput.py", &[]),
    ("ratio_heatmap.py", &[]),
    ("latency.py", &[]),
    ("latency_split.py", &[]),
    ("plot_all.py", &[]),
    ("compare_runs.py", &["tests/fixtures/small_sweep_b.csv"]),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Runs `scripts/<script> <args…>` from the repository root with the environment's Python.
fn python(script: &str, args: &[&Path]) -> Output {
    let output = Command::new(pyenv::python())
        .arg(root().join("scripts").join(script))
        .args(args)
        .current_dir(root())
        .env("MPLBACKEND", "Agg")
        .output()
        .expect("the environment's Python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "a package is missing from {}; add it to scripts/requirements.txt:\n{stderr}",
        pyenv::python().display()
    );
    output
}

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Each chart exists as a real PNG and a real SVG, big enough to hold more than empty axes.
fn assert_charts(dir: &Path, names: &[&str]) {
    for name in names {
        let png = dir.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.len() > 1024,
            "{} is only {} bytes",
            png.display(),
            bytes.len()
        );
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            png.display()
        );

        let svg = dir.join(format!("{name}.svg"));
        let text =
            std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
        assert!(
            text.len() > 1024,
            "{} is only {} bytes",
            svg.display(),
            text.len()
        );
        assert!(text.contains("<svg"), "{} is not an SVG", svg.display());
    }
}

/// Writes a copy of the fixture with one column dropped, or with every row marked invalid.
fn altered_fixture(dir: &Path, drop_column: Option<&str>, all_invalid: bool) -> PathBuf {
    let mut reader = csv::Reader::from_path(fixture("small_sweep.csv")).expect("read fixture");
    let headers = reader.headers().expect("fixture header").clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| Some(&headers[i]) != drop_column)
        .collect();
    let valid = headers
        .iter()
        .position(|h| h == "valid")
        .expect("valid column");
    let path = dir.join("altered.csv");
    let mut writer = csv::Writer::from_path(&path).expect("write altered CSV");
    writer
        .write_record(keep.iter().map(|&i| &headers[i]))
        .unwrap();
    for record in reader.records() {
        let record = record.expect("fixture row");
        let fields = keep.iter().map(|&i| {
            if i == valid && all_invalid {
                "false"
            } else {
                &record[i]
            }
        });
        writer.write_record(fields).unwrap();
    }
    writer.flush().unwrap();
    path
}

/// Each of `scripts` refuses `csv` with exit status 1 and a single line on stderr naming
/// `expect`, and writes no chart.
fn assert_refused(scripts: &[(&str, &[&str])], csv: &Path, out: &Path, expect: &[&str]) {
    for &(script, extra) in scripts {
        let extra: Vec<PathBuf> = extra.iter().map(|a| root().join(a)).collect();
        let mut args: Vec<&Path> = vec![csv];
        args.extend(extra.iter().map(PathBuf::as_path));
        args.extend([Path::new("--out"), out]);
        let output = python(script, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{script}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{script}: {stderr}");
        for needle in expect {
            assert!(
                stderr.contains(needle),
                "{script}: {stderr:?} lacks {needle:?}"
            );
        }
        assert!(
            !out.exists() || std::fs::read_dir(out).unwrap().next().is_none(),
            "{script} wrote files although it failed"
        );
    }
}

#[test]
fn plot_all_draws_every_chart_from_a_real_sweep() {
    let out = tempfile::tempdir().unwrap();
    let csv = fixture("small_sweep.csv");
    let output = python("plot_all.py", &[&csv, Path::new("--out"), out.path()]);
    assert_ok(&output, "plot_all.py");
    assert_charts(out.path(), &CHARTS);
    // It lists what it wrote, one file a line, so that a caller can pick them up.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), CHARTS.len() * 2, "{stdout}");
}

#[test]
fn compare_runs_draws_two_runs_side_by_side() {
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (fixture("small_sweep.csv"), fixture("small_sweep_b.csv"));
    let output = Command::new(pyenv::python())
        .arg(root().join("scripts/compare_runs.py"))
        .args([&a, &b])
        .args(["--labels", "2 cores", "16 cores", "--out"])
        .arg(out.path())
        .current_dir(root())
        .output()
        .expect("the environment's Python runs");
    assert_ok(&output, "compare_runs.py");
    assert_charts(out.path(), &["compare_runs"]);
    let svg = std::fs::read_to_string(out.path().join("compare_runs.svg")).unwrap();
    // The labels given on the command line name the runs in the legend.
    assert!(svg.contains("16 cores"), "the legend lacks the run labels");
}

#[test]
fn a_csv_without_a_needed_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Every chart is drawn over the grid's coordinates.
    let csv = altered_fixture(dir.path(), Some("workers"), false);
    assert_refused(&SCRIPTS, &csv, &out, &["missing column(s)", "workers"]);
    // Every chart but the latency split draws throughput.
    let csv = altered_fixture(dir.path(), Some("throughput_rps"), false);
    let drawing_throughput: Vec<_> = SCRIPTS
        .into_iter()
        .filter(|(script, _)| *script != "latency_split.py")
        .collect();
    assert_refused(
        &drawing_throughput,
        &csv,
        &out,
        &["missing column(s)", "throughput_rps"],
    );
    // The latency split needs the server's own timings.
    let csv = altered_fixture(dir.path(), Some("server_p50_us"), false);
    let split = [("latency_split.py", &[][..])];
    assert_refused(&split, &csv, &out, &["missing column(s)", "server_p50_us"]);
}

#[test]
fn a_csv_without_valid_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = altered_fixture(dir.path(), None, true);
    let out = dir.path().join("out");
    assert_refused(&SCRIPTS, &csv, &out, &["no valid rows"]);
}

/// What `command` prints with `scripts/bench_lib.sh` sourced, trimmed; it must succeed.
fn bench_lib(command: &str) -> String {
    let lib = root().join("scripts/bench_lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}'; {command}", lib.display()))
        .output()
        .expect("bash runs");
    assert_ok(&out, command);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What `scripts/bench_lib.sh`'s `function` prints when given a file holding `fixture` (in
/// place of /proc/interrupts or /proc/stat).
fn bench_lib_on(function: &str, fixture: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fixture");
    std::fs::write(&file, fixture).unwrap();
    bench_lib(&format!("{function} '{}'", file.display()))
}

/// The benchmark scripts' round order (`scripts/bench_lib.sh`): as given on odd rounds,
/// reversed on even ones, so that over two rounds every server runs first once and last once.
#[test]
fn bench_scripts_reverse_their_order_every_other_round() {
    let order = |round: u32, items: &str| bench_lib(&format!("round_order {round} {items}"));
    assert_eq!(order(1, "process rayon redis"), "process rayon redis");
    assert_eq!(order(2, "process rayon redis"), "redis rayon process");
    assert_eq!(order(3, "shm rayon"), "shm rayon");
    assert_eq!(order(4, "shm rayon"), "rayon shm");
    assert_eq!(order(2, "shm"), "shm");
}

/// `machine_ipis` sums the rescheduling and function-call interrupts over every CPU, and
/// nothing else (not the local timer, not the row's description).
#[test]
fn bench_scripts_count_the_ipis_of_every_cpu() {
    let ipis = bench_lib_on(
        "machine_ipis",
        "           CPU0       CPU1       CPU2\n\
         \x20 1:          9          0          0  IO-APIC   1-edge      i8042\n\
         LOC:     100000      90000      80000   Local timer interrupts\n\
         RES:         11         22         33   Rescheduling interrupts\n\
         CAL:        400        500        600   Function call interrupts\n\
         TLB:          7          8          9   TLB shootdowns\n",
    );
    assert_eq!(ipis, "1566");
}

/// `machine_switches` reads the machine's context switches from /proc/stat's `ctxt` row and
/// nothing else (not the CPU time rows, not the interrupt counts).
#[test]
fn bench_scripts_count_the_context_switches() {
    let switches = bench_lib_on(
        "machine_switches",
        "cpu  100 0 50 1000 0 0 0 0 0 0\n\
         cpu0 50 0 25 500 0 0 0 0 0 0\n\
         intr 123456 9 0\n\
         ctxt 987654\n\
         btime 1700000000\n\
         processes 4321\n",
    );
    assert_eq!(switches, "987654");
}
