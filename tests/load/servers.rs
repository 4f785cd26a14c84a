//! Real servers: the stand-in of the original Python server, and this crate's server with
//! each thread and process backend, in closed and open loops.

use super::{
    load_bin_at, python_server, python_server_with, read_json, real_server, spec, write_json,
};
use serde_json::Value;
use std::time::Duration;
use threadcenter::kernel::Kernel;
use threadcenter::load::{self, Arrival, LoadSpec, Pace, Stop};

#[tokio::test]
async fn original_python_server_verifies_every_result() {
    let (_server, addr) = python_server();
    // The original client's load: 4 connections × 5 requests of fib(500000), one at a time.
    let r = load::run(&spec(addr)).await.unwrap();
    assert_eq!(r.errors, Default::default(), "notes: {:?}", r.notes);
    assert_eq!((r.ok, r.sent), (20, 20));
    assert_eq!(r.latency.count, 20);
    assert!(r.server.is_none() && r.queue.is_none() && r.compute.is_none());

    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let (ok, stdout, stderr) = load_bin_at(addr, &["--json", json_path.to_str().unwrap()]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("20 ok, 0 failed"), "{stdout}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(saved["report"]["ok"], 20);
    assert_eq!(saved["spec"]["connections"], 4);
    assert!(saved["environment"]["cores"].as_u64().unwrap() >= 1);
}

/// The stand-in keeps the original's one global map from `str(id)` to connection: a second
/// connection sending an id that is still in flight takes the reply, and the first connection
/// never gets one. One worker process, kept busy by a long job while A and B register the same
/// id, fixes the order in which results come back.
#[tokio::test]
async fn the_stand_in_sends_a_shared_id_to_the_last_connection_that_used_it() {
    use serde_json::json;
    use threadcenter::kernel::Kernel;
    let (_server, addr) = python_server_with(1);
    let connect = || tokio::net::TcpStream::connect(addr);
    let (mut busy, mut a, mut b) = (
        connect().await.unwrap(),
        connect().await.unwrap(),
        connect().await.unwrap(),
    );
    // About a second of pure-Python work: A and B register long before it ends.
    write_json(
        &mut busy,
        &json!({"id": "long", "cmd": "compute", "n": 4_000_000}),
    )
    .await;
    // A ping is answered by the reading thread after the frame before it was handled, so its
    // pong says the compute ahead of it is in the map.
    for s in [&mut a, &mut b] {
        write_json(
            s,
            &json!({"id": 7, "cmd": "compute", "n": 1000, "kernel": "tlb"}),
        )
        .await;
        write_json(s, &json!({"id": "p", "cmd": "ping"})).await;
        let pong = read_json(s).await.unwrap();
        assert_eq!(pong, json!({"id": "p", "ok": true, "pong": true}));
    }
    write_json(&mut a, &json!({"id": 8, "cmd": "compute", "n": 1})).await;
    let long = read_json(&mut busy).await.unwrap();
    assert_eq!(
        long,
        json!({"id": "long", "result": Kernel::Fib.expected(4_000_000)})
    );
    // Unknown fields are ignored (every compute is fib), ids come back as strings.
    let to_b = read_json(&mut b).await.unwrap();
    assert_eq!(
        to_b,
        json!({"id": "7", "result": Kernel::Fib.expected(1000)})
    );
    // A's id 7 result went nowhere: the next frame A gets answers id 8.
    let to_a = read_json(&mut a).await.unwrap();
    assert_eq!(to_a, json!({"id": "8", "result": Kernel::Fib.expected(1)}));
    // compute without n uses 1000000, as the original does.
    write_json(&mut a, &json!({"id": 9, "cmd": "compute"})).await;
    let default_n = read_json(&mut a).await.unwrap();
    assert_eq!(
        default_n,
        json!({"id": "9", "result": Kernel::Fib.expected(1_000_000)})
    );
}

/// Many connections with requests pipelined against the stand-in's global id map: every
/// reply arrives and verifies because ids are unique across the run (issue 13's acceptance
/// run).
#[tokio::test]
async fn many_pipelined_connections_against_the_stand_in_all_verify() {
    let (_server, addr) = python_server();
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &["-c", "16", "-d", "4", "--requests", "20", "--size", "1000"],
    )
    .await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("320 ok, 0 failed"), "{stdout}");
}

/// The original server ignores the `kernel` field and runs its fib for every request, so a
/// kernel this driver cannot run itself (`pyfib-ft`, whose results are fib's) is probed and
/// then driven: the probe's reply verifies, and its id, from the run's own range, does not
/// collide in the stand-in's one global map with any connection's.
#[tokio::test]
async fn the_stand_in_answers_the_probe_and_the_run_then_verifies() {
    assert!(Kernel::PyfibFt.why_unavailable().is_some());
    let (_server, addr) = python_server();
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "-c",
            "8",
            "-d",
            "2",
            "--requests",
            "10",
            "--size",
            "1000",
            "--kernel",
            "fib:1,pyfib-ft:1",
        ],
    )
    .await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("80 ok, 0 failed"), "{stdout}");
}

/// Closed and open loops against the real server with one backend, one worker.
async fn real_server_suite(backend: &str) {
    let (_server, addr) = real_server(backend, 1);
    let fib = |connections, depth| LoadSpec {
        connections,
        depth,
        stop: Stop::Requests(5),
        size: 50_000,
        ..spec(addr)
    };
    for (c, d) in [(4, 1), (16, 16)] {
        let r = load::run(&fib(c, d)).await.unwrap();
        let n = u64::from(c) * 5;
        assert_eq!(
            r.errors,
            Default::default(),
            "{backend} C={c} D={d}: {:?}",
            r.notes
        );
        assert_eq!((r.ok, r.sent), (n, n), "{backend} C={c} D={d}");
        assert!(
            r.server.is_some() && r.compute.is_some(),
            "{backend}: no server timings"
        );
    }

    // One worker sleeping 20 ms per request serves 50 req/s.
    let sleepy = |rate| LoadSpec {
        connections: 4,
        depth: 4,
        stop: Stop::Duration(Duration::from_secs(1)),
        pace: Pace::Open {
            rate,
            arrival: Arrival::Uniform,
        },
        mix: vec![(Kernel::Sleep, 1)],
        size: 20_000,
        timeout: Duration::from_secs(10),
        ..spec(addr)
    };
    let under = load::run(&sleepy(20.0)).await.unwrap();
    assert_eq!(under.total_errors(), 0, "{backend}: {:?}", under.notes);
    let achieved = under.achieved_rps / 20.0;
    assert!(
        (0.95..=1.05).contains(&achieved),
        "{backend}: achieved {}",
        under.achieved_rps
    );
    assert!(
        under.shortfall.is_none(),
        "{backend}: {:?}",
        under.shortfall
    );

    let over = load::run(&sleepy(200.0)).await.unwrap();
    assert_eq!(over.total_errors(), 0, "{backend}: {:?}", over.notes);
    assert!(
        over.shortfall.is_some(),
        "{backend}: 200 req/s on a 50 req/s server"
    );
    assert!(
        over.achieved_rps < 150.0,
        "{backend}: achieved {}",
        over.achieved_rps
    );
    assert!(over.late_sends > 0);
    assert!(
        over.latency.p99_us > 2.0 * under.latency.p99_us,
        "{backend}: p99 {} overloaded vs {} under capacity",
        over.latency.p99_us,
        under.latency.p99_us
    );
    // Coordinated-omission correction: from the intended send, the backlog's wait counts.
    assert!(
        over.latency.p99_us > 1.5 * over.service.p99_us
            && over.latency.mean_us > over.service.mean_us,
        "{backend}: latency {:?} vs service {:?}",
        over.latency,
        over.service
    );
}

#[tokio::test]
async fn real_server_process_backend() {
    real_server_suite("process").await;
}

#[tokio::test]
async fn real_server_rayon_backend() {
    real_server_suite("rayon").await;
}

#[tokio::test]
async fn real_server_tokio_backend() {
    real_server_suite("tokio").await;
}

/// After a duration-bounded run ends with its window still full, the driver waits for the
/// outstanding replies without spinning: it once re-armed its wake-up at the (past) end time
/// and burned a core until the slow replies came.
#[tokio::test(flavor = "current_thread")]
async fn waiting_for_slow_replies_after_the_end_costs_no_cpu() {
    let (_server, addr) = real_server("rayon", 1);
    let spec = LoadSpec {
        connections: 1,
        depth: 1,
        stop: Stop::Duration(Duration::from_millis(100)),
        mix: vec![(Kernel::Sleep, 1)],
        size: 1_500_000,
        ..spec(addr)
    };
    let r = load::run(&spec).await.unwrap();
    assert_eq!(r.ok, 1, "{r:?}");
    assert!(
        r.wall_s >= 1.4,
        "the run waited for its reply: {}",
        r.wall_s
    );
    // Idle waiting: far below the 1.5 s a spinning loop would burn.
    assert!(
        r.client_cpu_s < 0.5,
        "driver used {} CPU-s waiting",
        r.client_cpu_s
    );
    assert!(!r.driver_saturated);
}

/// A reply that lands after a duration-bounded window is verified but not counted: one
/// 700 ms sleep at a time in a 1 s window completes once inside it (throughput 1 reply/s, not
/// 2 replies over the 1.4 s to the last one), and the second reply is the 0.4 s tail. The
/// figures come from the sleep itself, not from the machine's speed.
#[tokio::test]
async fn throughput_counts_only_replies_inside_the_window() {
    let (_server, addr) = real_server("rayon", 1);
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "--duration",
            "1s",
            "-c",
            "1",
            "--kernel",
            "sleep",
            "--size",
            "700000",
            "--json",
            json_path.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let r = &saved["report"];
    assert_eq!(r["ok"], 2, "{r}");
    assert_eq!(r["in_window"], 1, "{r}");
    let throughput = r["throughput_rps"].as_f64().unwrap();
    assert!((throughput - 1.0).abs() < 0.01, "throughput {throughput}");
    assert!(
        (r["duration_s"].as_f64().unwrap() - 1.0).abs() < 1e-6,
        "{r}"
    );
    // The second job starts after the first reply (0.7 s) and ends 0.4 s past the window; a
    // busy machine can only make it later, and a whole further job (0.7 s) would be a bug.
    let tail = r["tail_s"].as_f64().unwrap();
    assert!((0.35..1.1).contains(&tail), "tail {tail}");
    assert!(stdout.contains("tail "), "{stdout}");
}

/// Once a client has its replies and half-closes, the server closes its side at once: the
/// driver, which half-closes after its last reply and reads on until the server's close (to
/// see any reply that comes after the last), then ends there and then, not after its linger.
/// The same for the original server's stand-in.
#[tokio::test]
async fn servers_close_a_half_closed_connection_once_its_replies_are_out() {
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut servers = vec![("python", python_server())];
    for backend in ["process", "rayon", "tokio", "prefork", "shm"] {
        servers.push((backend, real_server(backend, 2)));
    }
    for (name, (_server, addr)) in &servers {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        for id in 0..3 {
            write_json(&mut s, &json!({"id": id, "cmd": "compute", "n": 2_000})).await;
        }
        let mut ids = Vec::new();
        for _ in 0..3 {
            let r = read_json(&mut s).await.expect("a reply");
            ids.push(r["id"].to_string().replace('"', ""));
        }
        ids.sort();
        assert_eq!(ids, ["0", "1", "2"], "{name}");
        s.shutdown().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), s.read(&mut [0u8; 1])).await;
        assert!(
            matches!(end, Ok(Ok(0))),
            "{name}: the server did not close after the half-close: {end:?}"
        );
    }
}
