//! The sweep's CPU split end to end: explicit `--driver-cpus`/`--server-cpus` pin the driver's
//! threads and every thread of the server tree while a cell runs, env.json records the split
//! (or `null` when there is none), and bad lists are refused before anything is written.

mod common;

use common::BIN;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use threadcenter::machine::allowed_cpus;

/// A sweep of one process-backend cell at 2 workers into `out`; `args` give the rest.
fn one_cell(out: &Path, duration: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["sweep", "--exact", "--out"])
        .arg(out)
        .args([
            "--backends",
            "process",
            "--workers",
            "2",
            "--connections",
            "2",
        ])
        .args(["--kernels", "fib", "--sizes", "2000", "--repeat", "1"])
        .args(["--warmup", "0s", "--duration", duration])
        .args(args);
    cmd
}

fn env_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("env.json")).unwrap()).unwrap()
}

/// Every process below `root` (children, grandchildren…), from the parent ids in /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after_name.split(' ').nth(1).unwrap().parse().unwrap();
        parent_of.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// `Cpus_allowed_list` of every thread of `pid` (empty once it has gone).
fn thread_cpus(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .collect()
}

fn finish(child: Child) -> String {
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn explicit_cpus_pin_the_driver_and_the_whole_server_tree_and_go_in_env_json() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs two usable CPUs");
        return;
    }
    let (driver, server) = (cpus[0].to_string(), cpus[1].to_string());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let sweep = one_cell(
        &out,
        "3s",
        &["--driver-cpus", &driver, "--server-cpus", &server],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The server tree while the cell runs: the server and its two worker processes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let tree = loop {
        let tree = descendants(sweep.id());
        if tree.len() >= 3 {
            break tree;
        }
        assert!(
            Instant::now() < deadline,
            "no server tree appeared: {tree:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let server_threads: Vec<String> = tree.iter().flat_map(|&p| thread_cpus(p)).collect();
    assert!(!server_threads.is_empty());
    assert!(
        server_threads.iter().all(|c| *c == server),
        "{server_threads:?}"
    );
    let driver_threads = thread_cpus(sweep.id());
    assert!(
        driver_threads.iter().all(|c| *c == driver),
        "{driver_threads:?}"
    );
    finish(sweep);

    let split = &env_json(&out)["cpu_split"];
    assert_eq!(split["driver"], serde_json::json!([cpus[0]]));
    assert_eq!(split["server"], serde_json::json!([cpus[1]]));
    let rows = threadcenter::record::read_csv(&out.join("results.csv")).unwrap();
    assert_eq!(rows.len(), 1);
    // The row's cores, and so its ideal throughput and efficiency, are the server's share.
    assert_eq!(rows[0].cores, 1, "{:?}", rows[0]);
}

#[test]
fn without_flags_the_split_is_automatic_from_eight_cpus_and_null_below() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let sweep = one_cell(&out, "100ms", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(sweep);
    let split = &env_json(&out)["cpu_split"];
    if allowed_cpus().len() < 8 {
        assert!(split.is_null(), "{split}");
    } else {
        assert!(!split["driver"].as_array().unwrap().is_empty(), "{split}");
        assert!(!split["server"].as_array().unwrap().is_empty(), "{split}");
    }
}

#[test]
fn bad_cpu_lists_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let far = (allowed_cpus().last().unwrap() + 1).to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["--driver-cpus", "0"], "--server-cpus"),
        (&["--server-cpus", "0"], "--driver-cpus"),
        (&["--driver-cpus", "0", "--server-cpus", "0"], "disjoint"),
        (&["--driver-cpus", "0", "--server-cpus", &far], "not among"),
        (
            &["--driver-cpus", "x", "--server-cpus", "0"],
            "not a CPU number",
        ),
    ];
    for (args, says) in cases {
        let o = one_cell(&out, "100ms", args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!out.exists());
}
