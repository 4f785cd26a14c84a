//! Sharded sweeps without a scheduler: the slices of `plan`, `--shard auto` reading Slurm and
//! Kubernetes variables on a child process, two shards merged by `report --input` giving the
//! verdicts one report of the same rows gives, and the refusals (mixed grids or seeds, a cell
//! twice), and runs of two machines reported side by side.

mod common;

use common::BIN;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use threadcenter::record::read_csv;
use threadcenter::report::noisy;
use threadcenter::sweep::grid::{Grid, Preset, SizeSpec};
use threadcenter::sweep::kernels::{self, KernelRow};
use threadcenter::sweep::shard::Shard;
use threadcenter::sweep::{plan, Calibrated, Calibration};

/// Two grid points (workers 1 and 2) of two backends; fixed work sizes, so every shard's cells
/// have the same `size` whatever its calibration measures.
const TINY: &[&str] = &[
    "--backends",
    "process,rayon",
    "--workers",
    "1,2",
    "--connections",
    "2",
    "--kernels",
    "fib",
    "--sizes",
    "2000",
    "--repeat",
    "3",
    "--duration",
    "100ms",
    "--warmup",
    "30ms",
];

fn sweep(out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("sweep")
        .arg("--exact")
        .arg("--out")
        .arg(out)
        .args(TINY)
        .args(extra);
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().expect("run sweep")
}

fn report(inputs: &[&Path], out: &Path) -> Output {
    Command::new(BIN)
        .arg("report")
        .arg("--input")
        .args(inputs)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run report")
}

fn env_of(folder: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(folder.join("env.json")).unwrap()).unwrap()
}

fn edit_env(folder: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut env = env_of(folder);
    f(&mut env);
    std::fs::write(folder.join("env.json"), env.to_string()).unwrap();
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["results.csv", "env.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn shards_are_disjoint_balanced_cover_the_grid_and_keep_a_point_together() {
    let mut grid = Grid::preset(Preset::Quick, 2);
    grid.workers = vec![1, 2, 4];
    grid.connections = vec![2, 4];
    grid.sizes = vec![SizeSpec::N(1000), SizeSpec::N(2000)];
    let calibration: Calibration = grid
        .kernels
        .iter()
        .flat_map(|k| {
            grid.sizes
                .iter()
                .map(move |s| format!("{}|{}", k.name, s.label()))
        })
        .map(|key| {
            let n = key.rsplit('|').next().unwrap().parse().unwrap();
            let c = Calibrated {
                n,
                target_us: None,
                single_us: 1.0,
                mix_sizes: Vec::new(),
            };
            (key, c)
        })
        .collect();
    let key = |c: &threadcenter::sweep::cell::Cell| {
        (
            c.workload.name.clone(),
            c.backend.name(),
            c.workers,
            c.connections,
            c.depth,
            c.size,
            c.repetition,
        )
    };
    let whole: BTreeSet<_> = plan(&grid, &calibration, None).iter().map(key).collect();
    assert_eq!(whole.len(), grid.cells_per_rep() * grid.repeat as usize);
    let points = grid.cells_per_rep() / grid.backends.len();
    for count in 1..=5 {
        let mut union = BTreeSet::new();
        let mut owner = BTreeMap::new();
        let mut sizes = Vec::new();
        for index in 1..=count {
            let shard = Shard::new(index, count).unwrap();
            let cells: Vec<_> = plan(&grid, &calibration, Some(shard))
                .iter()
                .map(key)
                .collect();
            for c in &cells {
                assert!(union.insert(c.clone()), "{c:?} in two shards of {count}");
                let point = (c.0.clone(), c.2, c.3, c.4, c.5);
                let first = *owner.entry(point).or_insert(index);
                assert_eq!(first, index, "one grid point split across shards");
            }
            sizes.push(cells.len() / (grid.backends.len() * grid.repeat as usize));
        }
        assert_eq!(union, whole, "{count} shards do not cover the grid");
        let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(hi - lo <= 1, "unbalanced: {sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), points);
    }
}

#[test]
fn shard_auto_without_a_scheduler_or_with_a_bad_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = sweep(&out, &["--shard", "auto"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("neither a Slurm array job"), "{err}");
    let o = sweep(&out, &["--shard", "auto"], &[("JOB_COMPLETION_INDEX", "0")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --shards"));
    for bad in ["0/2", "3/2", "1of2"] {
        let o = sweep(&out, &["--shard", bad], &[]);
        assert!(!o.status.success(), "--shard {bad} accepted");
    }
    // Three shards of two grid points: the third has nothing to run.
    let o = sweep(&out, &["--shard", "3/3"], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no grid points"));
    assert!(!out.exists(), "a refused shard left a folder");
}

/// Shard 1 from Slurm variables, shard 2 from Kubernetes ones; merged, their verdicts are
/// those of one report over the same rows in one CSV; mixed seeds and a cell given twice are
/// refused; the same run from two machines is reported side by side.
#[test]
fn two_shards_merge_into_the_report_of_the_whole_grid() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("shard-1"), dir.path().join("shard-2"));
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "4"),
        ("SLURM_ARRAY_TASK_MIN", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ];
    let o = sweep(&one, &["--shard", "auto"], &slurm);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("shard 1/2 from a Slurm array job"), "{err}");
    let k8s = [("JOB_COMPLETION_INDEX", "1")];
    let o = sweep(&two, &["--shard", "auto", "--shards", "2"], &k8s);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("shard 2/2 from a Kubernetes Indexed Job"),
        "{err}"
    );
    assert_eq!(
        env_of(&one)["shard"],
        serde_json::json!({"index": 1, "count": 2})
    );
    assert_eq!(
        env_of(&two)["shard"],
        serde_json::json!({"index": 2, "count": 2})
    );

    // The same rows in one CSV, reported alone, against the two shards merged.
    let rows_one = read_csv(&one.join("results.csv")).unwrap();
    let rows_two = read_csv(&two.join("results.csv")).unwrap();
    let workers = |rows: &[threadcenter::record::Row]| -> BTreeSet<u32> {
        rows.iter().map(|r| r.workers).collect()
    };
    assert_eq!(workers(&rows_one), BTreeSet::from([1]));
    assert_eq!(workers(&rows_two), BTreeSet::from([2]));
    let whole = dir.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    // Per-kernel rows, as a mix's cells write them (here one kernel standing for its cell), in
    // each shard and in the whole: the merged report must judge them as the whole one does.
    let per_kernel = |rows: &[threadcenter::record::Row]| -> Vec<KernelRow> {
        rows.iter()
            .map(|r| KernelRow {
                kernel: r.kernel.clone(),
                backend: r.backend.clone(),
                workers: r.workers,
                connections: r.connections,
                depth: r.depth,
                size: r.size,
                repetition: r.repetition,
                mix: r.kernel.clone(),
                requests: r.requests,
                throughput_rps: r.throughput_rps,
                lat_p50_us: r.lat_p50_us,
                lat_p99_us: r.lat_p99_us,
                compute_p50_us: r.compute_p50_us,
            })
            .collect()
    };
    for (folder, rows) in [(&one, &rows_one), (&two, &rows_two)] {
        kernels::append(&folder.join(kernels::FILE), &per_kernel(rows)).unwrap();
        kernels::append(&whole.join(kernels::FILE), &per_kernel(rows)).unwrap();
    }
    let mut w = csv::Writer::from_path(whole.join("results.csv")).unwrap();
    for r in rows_one.iter().chain(&rows_two) {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
    std::fs::copy(one.join("env.json"), whole.join("env.json")).unwrap();
    let o = report(&[&whole.join("results.csv")], &whole.join("report.html"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let merged = dir.path().join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let o = report(
        &[&one, &two.join("results.csv")],
        &merged.join("report.html"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verdicts = |d: &Path| std::fs::read_to_string(d.join("verdicts.csv")).unwrap();
    assert_eq!(verdicts(&merged), verdicts(&whole));
    let noisy = |d: &Path| std::fs::read_to_string(d.join(noisy::FILE)).unwrap();
    assert!(noisy(&whole).lines().count() > 1, "{}", noisy(&whole));
    assert_eq!(noisy(&merged), noisy(&whole));
    assert_eq!(
        verdicts(&merged).lines().count(),
        1 + 2 * 2,
        "{}",
        verdicts(&merged)
    );

    // A cell given twice, and a shard of another seed, are refused naming the files.
    let o = report(&[&one, &two, &one], &merged.join("again.html"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("in both"), "{err}");
    let other = dir.path().join("other-seed");
    copy_run(&two, &other);
    edit_env(&other, |e| e["seed"] = serde_json::json!(99));
    let o = report(&[&one, &other], &merged.join("mixed.html"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "mixed seeds merged");
    assert!(
        err.contains("different sweeps") && err.contains("other-seed"),
        "{err}"
    );
    assert!(!merged.join("mixed.html").exists());

    // The whole run on two machines: one section and one set of verdicts per machine.
    let (a, b) = (dir.path().join("host-a"), dir.path().join("host-b"));
    for (folder, host) in [(&a, "host-a"), (&b, "host-b")] {
        copy_run(&whole, folder);
        edit_env(folder, |e| {
            e["shard"] = serde_json::Value::Null;
            e["hostname"] = serde_json::json!(host);
        });
    }
    let side = dir.path().join("side");
    std::fs::create_dir_all(&side).unwrap();
    let o = report(&[&a, &b], &side.join("report.html"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(side.join("report.html")).unwrap();
    assert!(html.contains("Machine: host-a") && html.contains("Machine: host-b"));
    let text = verdicts(&side);
    let header = text.lines().next().unwrap();
    assert!(header.ends_with(",machine"), "{header}");
    assert_eq!(
        header.trim_end_matches(",machine"),
        verdicts(&whole).lines().next().unwrap()
    );
    for host in ["host-a", "host-b"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(host)).collect();
        assert_eq!(lines.len(), 4, "{host}: {text}");
        for (line, alone) in lines.iter().zip(verdicts(&whole).lines().skip(1)) {
            assert!(line.starts_with(alone), "{line} vs {alone}");
        }
    }
}

/// A run folder written by hand: `workers` grid points of fib at a 20 µs target calibrated to
/// `n`, process and rayon with three repetitions each (process throughput × `ratio`), and an
/// env.json naming the shard, machine and margin.
fn fake_run(dir: &Path, shard: Option<(u32, u32)>, host: &str, cpu: &str, n: u64, spec: FakeRun) {
    std::fs::create_dir_all(dir).unwrap();
    let mut w = csv::Writer::from_path(dir.join("results.csv")).unwrap();
    for &workers in spec.workers {
        for (backend, scale) in [("process", spec.ratio), ("rayon", 1.0)] {
            for (rep, wobble) in [0.99, 1.0, 1.01].into_iter().enumerate() {
                let mut row = threadcenter::report::simulate::synthetic_row(
                    "fib",
                    backend,
                    workers,
                    n,
                    rep as u32,
                    1000.0 * scale * wobble,
                );
                row.target_us = Some(20.0);
                w.serialize(row).unwrap();
            }
        }
    }
    w.flush().unwrap();
    let shard = shard.map(|(index, count)| serde_json::json!({"index": index, "count": count}));
    let env = serde_json::json!({
        "hostname": host,
        "cpu_model": cpu,
        "cores": 2,
        "equivalence": spec.margin,
        "seed": 7,
        "grid": {"workers": [1, 2, 3], "seed": 7},
        "shard": shard,
        "calibration": {"fib|20us": {"n": n, "target_us": 20.0, "single_us": 20.0}},
    });
    std::fs::write(dir.join("env.json"), env.to_string()).unwrap();
}

#[derive(Clone, Copy)]
struct FakeRun {
    workers: &'static [u32],
    ratio: f64,
    margin: f64,
}

const ONE: FakeRun = FakeRun {
    workers: &[1],
    ratio: 1.0,
    margin: 0.05,
};
const TWO: FakeRun = FakeRun {
    workers: &[2],
    ..ONE
};

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Shard 1/2 run twice (each calibrating its own n for the 20 µs target) beside shard 2/2 is
/// refused naming both copies; so is a grid point given by two shards of different indices.
#[test]
fn overlapping_shards_are_refused_whatever_their_n() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sh1, sh1b, sh2) = (d.join("sh1"), d.join("sh1b"), d.join("sh2"));
    fake_run(&sh1, Some((1, 2)), "vm", "Xeon", 5228, ONE);
    fake_run(&sh1b, Some((1, 2)), "vm", "Xeon", 6110, ONE);
    fake_run(&sh2, Some((2, 2)), "vm", "Xeon", 5300, TWO);
    let out = d.join("report.html");
    let o = report(&[&sh1, &sh1b, &sh2], &out);
    let err = stderr_of(&o);
    assert!(!o.status.success(), "overlapping shards merged: {err}");
    assert!(
        err.contains("shard 1/2 is in both") && err.contains("sh1/") && err.contains("sh1b/"),
        "{err}"
    );
    assert!(!out.exists());

    // Shard 2/2 that (wrongly) holds shard 1's grid point too, at its own n.
    let sh2x = d.join("sh2x");
    fake_run(
        &sh2x,
        Some((2, 2)),
        "vm",
        "Xeon",
        6110,
        FakeRun {
            workers: &[1, 2],
            ..ONE
        },
    );
    let o = report(&[&sh1, &sh2x], &out);
    let err = stderr_of(&o);
    assert!(
        !o.status.success(),
        "a grid point in two shards merged: {err}"
    );
    assert!(
        err.contains("grid point fib w=1") && err.contains("sh1/") && err.contains("sh2x/"),
        "{err}"
    );
    assert!(!out.exists());
}

/// Two shards of three: the report renders, and says on stderr and on the page which shards
/// it covers and which is missing.
#[test]
fn missing_shards_are_said_on_stderr_and_on_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sh1, sh2) = (d.join("sh1"), d.join("sh2"));
    fake_run(&sh1, Some((1, 3)), "vm", "Xeon", 5228, ONE);
    fake_run(&sh2, Some((2, 3)), "vm", "Xeon", 5228, TWO);
    let out = d.join("report.html");
    let o = report(&[&sh1, &sh2], &out);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    let said = "covers shards 1, 2 of 3 only: shard 3 is missing";
    assert!(err.contains(said), "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.matches(said).count() >= 2, "not on the page twice");

    // All three: nothing to warn about.
    let sh3 = d.join("sh3");
    fake_run(
        &sh3,
        Some((3, 3)),
        "vm",
        "Xeon",
        5228,
        FakeRun {
            workers: &[3],
            ..ONE
        },
    );
    let o = report(&[&sh1, &sh2, &sh3], &out);
    let err = stderr_of(&o);
    assert!(o.status.success() && !err.contains("missing"), "{err}");
    assert!(!std::fs::read_to_string(&out).unwrap().contains("missing"));
}

/// Two machines whose sweeps recorded different margins: each machine's verdicts use its own.
#[test]
fn each_machine_is_judged_with_its_own_margin() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = (d.join("host-a"), d.join("host-b"));
    // process 1.3× the thread backend: within a ±50 % margin, far outside ±5 %.
    let run = FakeRun {
        workers: &[1],
        ratio: 1.3,
        margin: 0.5,
    };
    fake_run(&a, None, "host-a", "Xeon", 5228, run);
    fake_run(
        &b,
        None,
        "host-b",
        "Xeon",
        5228,
        FakeRun {
            margin: 0.05,
            ..run
        },
    );
    let out = d.join("report.html");
    let o = report(&[&a, &b], &out);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = std::fs::read_to_string(d.join("verdicts.csv")).unwrap();
    let verdict_of = |host: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(host))
            .map(|l| l.split(',').nth(11).unwrap().to_string())
            .collect()
    };
    assert_eq!(verdict_of("host-a").len(), 2, "{text}");
    assert!(
        verdict_of("host-a").iter().all(|v| v == "equivalent"),
        "{text}"
    );
    assert!(
        verdict_of("host-b").iter().all(|v| v == "process wins"),
        "{text}"
    );
}

/// Shards of one sweep run on two machines merge, and the page names both machines.
#[test]
fn merged_shards_from_two_machines_name_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sh1, sh2) = (d.join("sh1"), d.join("sh2"));
    fake_run(&sh1, Some((1, 2)), "xeon-vm", "Intel Xeon", 5228, ONE);
    fake_run(&sh2, Some((2, 2)), "epyc-1", "AMD EPYC 9654", 4100, TWO);
    let out = d.join("report.html");
    let o = report(&[&sh1, &sh2], &out);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    for name in ["xeon-vm", "Intel Xeon", "epyc-1", "AMD EPYC 9654"] {
        assert!(html.contains(name), "{name} not on the page");
    }
    assert!(html.contains("shard 1: xeon-vm; shard 2: epyc-1"));
    // Each shard's calibration, not the first one's as the whole sweep's.
    for (shard, n) in [("fib (shard 1)", "5228"), ("fib (shard 2)", "4100")] {
        let at = html
            .find(shard)
            .unwrap_or_else(|| panic!("{shard} not on the page"));
        assert!(html[at..].contains(n), "{shard}: n={n} not shown");
    }
}
