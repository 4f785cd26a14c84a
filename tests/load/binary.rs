//! The `load` and `merge` commands as a user runs them: the interval logs they write and read,
//! and the flags they refuse.

use super::{fake, load_bin, load_bin_at, read_json, spec, write_json, BIN};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use threadcenter::load::{self, histlog, Arrival, Cmd, LoadSpec, Pace, Stop, Summary};

/// A ping server answering at once, for runs that measure the driver and the logs.
async fn ping_server() -> SocketAddr {
    fake(|mut s| async move {
        while let Some(req) = read_json(&mut s).await {
            write_json(&mut s, &json!({"id": req["id"], "ok": true, "pong": true})).await;
        }
    })
    .await
}

#[tokio::test]
async fn merged_interval_logs_equal_one_histogram_of_all_samples() {
    let addr = ping_server().await;
    let run = |seed| LoadSpec {
        connections: 2,
        depth: 2,
        stop: Stop::Duration(Duration::from_millis(1200)),
        pace: Pace::Open {
            rate: 500.0,
            arrival: Arrival::Poisson,
        },
        cmd: Cmd::Ping,
        seed,
        ..spec(addr)
    };
    let a = load::run(&run(1)).await.unwrap();
    let b = load::run(&run(2)).await.unwrap();
    assert!(a.ok > 100 && b.ok > 100, "{} {}", a.ok, b.ok);
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, r) in [("a.hlog", &a), ("b.hlog", &b)] {
        assert!(r.intervals.len() >= 2, "{} intervals", r.intervals.len());
        let path = dir.path().join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        histlog::write_log(&mut file, &r.intervals, r.started, "test").unwrap();
        paths.push(path);
    }
    let (merged, intervals) = histlog::merge_files(&paths).unwrap();
    assert_eq!(intervals, a.intervals.len() + b.intervals.len());
    let mut all = a.hist.clone();
    all.add(&b.hist).unwrap();
    assert_eq!(merged.len(), a.ok + b.ok);
    assert_eq!(Summary::of(&merged), Summary::of(&all));

    // The same through the command line.
    let out = tokio::process::Command::new(BIN)
        .arg("merge")
        .args(&paths)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{} samples", a.ok + b.ok)),
        "{stdout}"
    );
}

#[tokio::test]
async fn load_binary_writes_a_readable_interval_log() {
    let addr = ping_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.hlog");
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "--cmd",
            "ping",
            "--duration",
            "1500ms",
            "--rate",
            "300",
            "--hist-log",
            log.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let text = std::fs::read(&log).unwrap();
    assert!(text.starts_with(b"#threadcenter-bench load"));
    let (h, intervals) = histlog::read_log(&text).unwrap();
    assert!(intervals >= 2, "{intervals}");
    assert!(
        stdout.contains(&format!("{} ok", h.len())),
        "{} samples vs {stdout}",
        h.len()
    );
}

#[tokio::test]
async fn load_records_each_driver_threads_busy_share() {
    let addr = ping_server().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "--cmd",
            "ping",
            "--requests",
            "200",
            "--driver-threads",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("driver busy"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let busy = v["report"]["driver_busy"].as_array().unwrap();
    assert_eq!(busy.len(), 2, "{busy:?}");
    assert!(
        busy.iter()
            .all(|b| (0.0..=1.0).contains(&b.as_f64().unwrap())),
        "{busy:?}"
    );
    assert!(v["report"].get("driver_busy_warning").is_some());
}

#[tokio::test]
async fn nonsense_flags_are_refused_with_reasons() {
    for (args, says) in [
        (&["--connections", "0"][..], "connections"),
        (&["--depth", "0"], "depth"),
        (&["--rate", "0"], "positive"),
        (&["--rate=-5"], "positive"),
        (&["--kernel", "fob"], "valid kernels: fib"),
        (&["--duration", "soon"], "500ms"),
        (
            &["--requests", "3", "--duration", "1s"],
            "cannot be used with",
        ),
        (&["--arrival", "uniform"], "--rate"),
        // More requests than a connection has ids (2⁴⁰ ÷ 5 each, for 4 connections).
        (&["--requests", "300000000000"], "request ids"),
    ] {
        let (ok, _, stderr) = load_bin(args).await;
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
