//! Many drivers, one result: three `load` processes started together with `--start-at`
//! against one real server, their `--hist-log`s merged by `merge`.

use super::{load_bin, load_bin_at, real_server, BIN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use threadcenter::load::histlog;
use threadcenter::load::histogram::new_histogram;
use threadcenter::load::Summary;
use threadcenter::server::child::ServerCommand;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Asserts two latency summaries equal: every percentile exactly, the mean to within the last
/// digits a JSON round trip may change.
fn assert_same_latency(a: &Value, b: &Summary, what: &str) {
    let a: Summary = serde_json::from_value(a.clone()).unwrap();
    let exact = |s: &Summary| (s.count, s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us);
    assert_eq!(exact(&a), exact(b), "{what}");
    assert!(
        (a.mean_us - b.mean_us).abs() <= 1e-9 * b.mean_us.abs(),
        "{what}: mean {} against {}",
        a.mean_us,
        b.mean_us
    );
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

#[tokio::test]
async fn three_drivers_started_together_merge_into_the_sum_of_their_parts() {
    let (_server, addr) = real_server("rayon", 2);
    let dir = tempfile::tempdir().unwrap();
    let start_at =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(3)).to_string();
    // The instant the drivers read, to the millisecond (logs record starts to the millisecond).
    let start = humantime::parse_rfc3339(&start_at).unwrap();
    let files = |ext: &str| -> Vec<PathBuf> {
        (0..3)
            .map(|i| dir.path().join(format!("driver-{i}.{ext}")))
            .collect()
    };
    let (logs, jsons) = (files("hlog"), files("json"));
    let driver = |i: usize| {
        let label = format!("driver-{i}");
        let (log, json) = (logs[i].clone(), jsons[i].clone());
        let start_at = start_at.clone();
        async move {
            let args = [
                "-c",
                "2",
                "-d",
                "2",
                "--size",
                "2000",
                "--duration",
                "1s",
                "--start-at",
                &start_at,
                "--label",
                &label,
                "--hist-log",
                log.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
            ];
            load_bin_at(addr, &args).await
        }
    };
    let runs = tokio::join!(driver(0), driver(1), driver(2));
    for (ok, stdout, stderr) in [runs.0, runs.1, runs.2] {
        assert!(ok, "{stdout}\n{stderr}");
    }

    let merged_json = dir.path().join("merged.json");
    let out = tokio::process::Command::new(BIN)
        .arg("merge")
        .args(&logs)
        .arg("--json")
        .arg(&merged_json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let merged = read_json(&merged_json);
    let total = &merged["report"];

    let parts: Vec<Value> = jsons
        .iter()
        .map(|j| read_json(j)["report"].clone())
        .collect();
    for field in ["ok", "sent", "late_replies", "warmup_sent"] {
        let sum: u64 = parts.iter().map(|p| count(&p[field])).sum();
        assert_eq!(count(&total[field]), sum, "{field}");
    }
    let errors = |r: &Value| -> u64 { r["errors"].as_object().unwrap().values().map(count).sum() };
    assert_eq!(errors(total), parts.iter().map(errors).sum::<u64>());
    assert!(count(&total["ok"]) > 0);

    // Percentiles of one histogram holding every sample of the three logs.
    let mut all = new_histogram();
    for (log, part) in logs.iter().zip(&parts) {
        let read = histlog::read_full(&std::fs::read(log).unwrap()).unwrap();
        assert_eq!(read.latency.len(), count(&part["ok"]), "{log:?}");
        let started = read.started.expect("the log has a StartTime");
        assert!(started >= start, "{log:?} started before --start-at");
        all.add(&read.latency).unwrap();
    }
    assert_same_latency(&total["latency"], &Summary::of(&all), "merged");

    // Each host's own line and entry, beside the total.
    let hosts = merged["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    for (i, (host, part)) in hosts.iter().zip(&parts).enumerate() {
        assert_eq!(host["host"], format!("driver-{i}"));
        assert_eq!(host["report"]["ok"], part["ok"]);
        let part: Summary = serde_json::from_value(part["latency"].clone()).unwrap();
        assert_same_latency(&host["report"]["latency"], &part, &format!("driver-{i}"));
        assert!(stdout.contains(&format!("driver-{i}")), "{stdout}");
    }
    assert!(
        stdout.contains(&format!("{} ok", count(&total["ok"]))),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_start_time_in_the_past_or_unreadable_is_refused() {
    for (at, says) in [
        ("2020-01-01T00:00:00Z", "in the past"),
        ("tomorrow", "2026-11-27T18:00:00Z"),
        ("+soon", "500ms"),
    ] {
        let (ok, _, stderr) = load_bin(&["--start-at", at]).await;
        assert!(!ok, "{at} accepted");
        assert!(stderr.contains(says), "{at}: {stderr}");
    }
}

/// Drivers of one multi-host run share a server that, like the original, keeps one map of ids
/// for all its connections: every id of every connection of every driver must be its own.
/// Each driver's ids sit under its own random 24-bit tag (two drivers draw the same one with
/// chance 2⁻²⁴), so two drivers' ids never meet, nor do two connections' of one driver.
#[tokio::test]
async fn ids_are_unique_across_connections_and_drivers() {
    use super::{fake, read_json as read_frame, spec, write_json};
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use threadcenter::load::{self, Cmd, LoadSpec, Stop};
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = seen.clone();
    let addr = fake(move |mut s| {
        let log = log.clone();
        async move {
            while let Some(req) = read_frame(&mut s).await {
                log.lock()
                    .unwrap()
                    .push(req["id"].as_u64().expect("an integer id"));
                write_json(&mut s, &json!({"id": req["id"], "ok": true, "pong": true})).await;
            }
        }
    })
    .await;
    let driver = LoadSpec {
        connections: 3,
        depth: 2,
        stop: Stop::Requests(20),
        cmd: Cmd::Ping,
        ..spec(addr)
    };
    let (a, b) = tokio::join!(load::run(&driver), load::run(&driver));
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!((r.ok, r.total_errors()), (60, 0), "{:?}", r.notes);
    }
    let mut ids = seen.lock().unwrap().clone();
    assert_eq!(ids.len(), 120);
    let mut tags: Vec<u64> = ids.iter().map(|id| id >> 40).collect();
    tags.sort();
    tags.dedup();
    assert_eq!(tags.len(), 2, "one tag per driver: {tags:x?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 120, "an id was sent twice");
}

/// `merge` exits as `load` would have for one driver: a driver whose own run failed (here its
/// requests timed out) fails the merge, which names it, though its counts are still added.
#[tokio::test]
async fn a_driver_that_failed_fails_the_merge() {
    let (_server, addr) = real_server("rayon", 2);
    let dir = tempfile::tempdir().unwrap();
    let start_at =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(2)).to_string();
    let log = |name: &str| dir.path().join(format!("{name}.hlog"));
    let (good, bad) = (log("good"), log("bad"));
    let driver = |label: &'static str, path: PathBuf, timeout: &'static str| {
        let start_at = start_at.clone();
        async move {
            let args = [
                "-c",
                "1",
                "--kernel",
                "sleep",
                "--size",
                "20000",
                "--duration",
                "1s",
                "--timeout",
                timeout,
                "--start-at",
                &start_at,
                "--label",
                label,
                "--hist-log",
                path.to_str().unwrap(),
            ];
            load_bin_at(addr, &args).await
        }
    };
    let (g, b) = tokio::join!(
        driver("good", good.clone(), "10s"),
        driver("bad", bad.clone(), "5ms")
    );
    assert!(g.0, "{}\n{}", g.1, g.2);
    assert!(!b.0, "20 ms jobs under a 5 ms timeout must fail: {}", b.1);
    let out = tokio::process::Command::new(BIN)
        .arg("merge")
        .args([&good, &bad])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "merge passed a failed driver: {stderr}"
    );
    assert!(stderr.contains("bad's run failed"), "{stderr}");
    assert!(!stderr.contains("good's run failed"), "{stderr}");
}

/// A start further ahead than the server's idle timeout (7 s against 4 s): the driver connects
/// shortly before the start (2 s), not at once, so the server has not closed its connections
/// as idle by then.
#[tokio::test]
async fn a_start_further_ahead_than_the_servers_idle_timeout_still_runs() {
    let (_server, addr) = super::start(ServerCommand::serve(BIN).args([
        "--port",
        "0",
        "--backend",
        "rayon",
        "--workers",
        "1",
        "--idle-timeout",
        "4s",
    ]));
    let start_at =
        humantime::format_rfc3339_millis(SystemTime::now() + Duration::from_secs(7)).to_string();
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "-c",
            "2",
            "--requests",
            "3",
            "--size",
            "1000",
            "--start-at",
            &start_at,
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("6 ok"), "{stdout}");
}
