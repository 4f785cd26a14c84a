//! The findings tables in README.md and results/README.md are generated from the committed runs' verdicts.csv by
//! `scripts/findings.py`; these tests fail when a table no longer matches its data, and show
//! that a hand edit is caught.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn findings(args: &[&str], file: &Path) -> Output {
    Command::new("python3")
        .arg(root().join("scripts/findings.py"))
        .args(args)
        .arg(file)
        .current_dir(root())
        .output()
        .expect("python3 must be on PATH")
}

/// The table `findings.py --write` puts under the marker `<!-- findings: SPEC -->` in a file
/// of its own.
fn generated(spec: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("table.md");
    std::fs::write(
        &file,
        format!("<!-- findings: {spec} -->\n<!-- /findings -->\n"),
    )
    .unwrap();
    let out = findings(&["--write"], &file);
    assert!(
        out.status.success(),
        "{spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&file).unwrap()
}

#[test]
fn readme_findings_match_the_committed_runs() {
    for file in ["README.md", "results/README.md"] {
        let out = findings(&["--check"], &root().join(file));
        assert!(
            out.status.success(),
            "{file}'s findings differ from the committed runs; run \
             `python3 scripts/findings.py --write {file}`:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_hand_edited_figure_is_caught_and_write_restores_it() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("<!-- findings: ")
        .expect("README.md has a findings table");
    let row = start + readme[start..].find("| `").expect("a table row");
    // Change the first digit in the first row's first cell.
    let digit = row + readme[row..].find(|c: char| c.is_ascii_digit()).unwrap();
    let old = readme.as_bytes()[digit];
    let new = if old == b'9' { '1' } else { (old + 1) as char };
    let mut edited = readme.clone();
    edited.replace_range(digit..digit + 1, &new.to_string());

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("README.md");
    std::fs::write(&copy, &edited).unwrap();
    let check = findings(&["--check"], &copy);
    assert_eq!(
        check.status.code(),
        Some(1),
        "a stale table must fail the check"
    );
    assert!(String::from_utf8_lossy(&check.stderr).contains("stale"));

    let write = findings(&["--write"], &copy);
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), readme);
}

/// With several comparators, each gets its own row per kernel, in the order named, and the
/// figures are that comparator's rows of verdicts.csv.
#[test]
fn a_table_against_several_comparators_has_a_row_for_each() {
    let run = "results/2026-11-28-xeon-2c-shm-4";
    let text = generated(&format!("{run} challenger=shm comparator=tokio,rayon"));
    assert!(text.contains("shm ÷ tokio and rayon, throughput"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with("| `fib` ÷ tokio |"), "{text}");
    assert!(rows[1].starts_with("| `fib` ÷ rayon |"), "{text}");
    // The 10 µs cell of each row is that comparator's ratio in verdicts.csv.
    let csv = std::fs::read_to_string(root().join(run).join("verdicts.csv")).unwrap();
    for (row, comparator) in rows.iter().zip(["tokio", "rayon"]) {
        let ratio: f64 = csv
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f[0] == "fib" && f[5] == "10.0" && f[6] == "shm" && f[7] == comparator)
            .map(|f| f[8].parse().unwrap())
            .expect("verdicts.csv has the row");
        let first_cell = row.split('|').nth(2).unwrap().trim();
        assert!(
            first_cell.starts_with(&format!("{ratio:.2} [")),
            "{comparator}: {row}"
        );
    }
}

#[test]
fn a_file_without_markers_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.md");
    std::fs::write(&plain, "# nothing generated here\n").unwrap();
    let out = findings(&["--check"], &plain);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no <!-- findings"));
}

#[test]
fn a_marker_with_an_unknown_option_or_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (marker, says) in [
        ("workerz=2", "unknown marker option"),
        ("table=median", "unknown table"),
        // A backend the run did not measure.
        ("challenger=shm", "has no shm ÷ best thread rows"),
        // A comparator it did not measure, alone or beside one it did.
        ("comparator=nosuch", "has no process ÷ nosuch rows"),
        ("comparator=rayon,nosuch", "has no process ÷ nosuch rows"),
    ] {
        let file = dir.path().join("bad.md");
        std::fs::write(
            &file,
            format!(
                "<!-- findings: results/2026-11-27-xeon-2c-standard {marker} -->\n\
                 <!-- /findings -->\n"
            ),
        )
        .unwrap();
        let out = findings(&["--check"], &file);
        assert!(!out.status.success(), "{marker} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{marker}: {err}");
    }
}

/// A `table=cpu` cell is the medians of results.csv's own figures for that cell's valid
/// repetitions: server and driver CPU per request, and the busy share of the cores over the
/// load run (window and drain tail).
#[test]
fn a_cpu_table_takes_its_figures_from_results_csv() {
    let run = "results/2026-11-28-xeon-2c-shm-4";
    let text = generated(&format!("{run} table=cpu"));
    let mut csv = csv::Reader::from_path(root().join(run).join("results.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    for backend in ["shm", "rayon"] {
        let cell: Vec<&csv::StringRecord> = rows
            .iter()
            .filter(|r| {
                r[at("valid")] == *"true"
                    && r[at("kernel")] == *"fib"
                    && r[at("backend")] == *backend
                    && r[at("target_us")] == *"10.0"
            })
            .collect();
        assert!(cell.len() > 1, "{backend} has repetitions at 10 µs");
        let num = |r: &csv::StringRecord, c: &str| r[at(c)].parse::<f64>().unwrap();
        let per_request = |c: &str| {
            median(
                cell.iter()
                    .map(|r| num(r, c) / num(r, "requests") * 1e6)
                    .collect(),
            )
        };
        let busy = median(
            cell.iter()
                .map(|r| {
                    (num(r, "server_cpu_s") + num(r, "client_cpu_s"))
                        / ((num(r, "duration_s") + num(r, "tail_s")) * num(r, "cores"))
                        * 100.0
                })
                .collect(),
        );
        let want = format!(
            "| `fib` {backend} | {:.1} / {:.1} / {busy:.0} % |",
            per_request("server_cpu_s"),
            per_request("client_cpu_s")
        );
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "no row starting {want:?} in:\n{text}"
        );
    }
}

/// `scripts/findings.py` keeps its own copy of the report's backend order (it runs without a
/// build): both must rank every backend alike, or a generated table and the report would list
/// the same rows in different orders.
#[test]
fn findings_order_backends_as_the_report_does() {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import findings; print(' '.join(findings.BACKEND_ORDER))")
        .current_dir(root().join("scripts"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 must be on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Every backend, fed in reverse so that the order must come from the ranking.
    let every = threadcenter::backend::BackendKind::ALL
        .iter()
        .rev()
        .map(|b| b.name().to_string());
    assert_eq!(python, threadcenter::report::data::order_backends(every));
}
