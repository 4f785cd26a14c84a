//! The load driver over real sockets: against a stand-in of the original Python server, fake
//! servers that misbehave on purpose, and the real server with each backend.

use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;
use threadcenter::load::{self, histlog, Arrival, Cmd, LoadReport, LoadSpec, Pace, Stop, Summary};
use threadcenter::server::child::{ServerChild, ServerCommand, StderrTo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter-bench");

/// How long a test server may take to say `listening on ADDR`.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts `cmd` in a process group of its own, so that dropping it kills the Python server's
/// pool workers and the process backend's workers with it.
fn start(cmd: ServerCommand) -> (ServerChild, SocketAddr) {
    let server = cmd
        .own_group()
        .stderr(StderrTo::Inherit)
        .start(START_LIMIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let addr = server.addr();
    (server, addr)
}

fn python_server() -> (ServerChild, SocketAddr) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/original_server.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("0");
    start(ServerCommand::new(cmd).named("Python server"))
}

fn real_server(backend: &str, workers: u32) -> (ServerChild, SocketAddr) {
    start(ServerCommand::serve(BIN).args([
        "--port",
        "0",
        "--backend",
        backend,
        "--workers",
        &workers.to_string(),
    ]))
}

/// Runs the `load` binary; returns its exit success, stdout and stderr.
async fn load_bin(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("load")
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fake server on a free port: every accepted connection is handed to `serve`.
async fn fake<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

async fn read_json(s: &mut TcpStream) -> Option<Value> {
    let len = s.read_u32().await.ok()?;
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await.ok()?;
    serde_json::from_slice(&buf).ok()
}

async fn write_json(s: &mut TcpStream, v: &Value) {
    let body = v.to_string();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    let _ = s.write_all(&frame).await;
}

fn spec(addr: SocketAddr) -> LoadSpec {
    LoadSpec {
        addr,
        ..LoadSpec::default()
    }
}

fn errors(r: &LoadReport, kind: &str) -> u64 {
    r.errors.get(kind).copied().unwrap_or(0)
}

#[tokio::test]
async fn original_python_server_verifies_every_result() {
    let (_server, addr) = python_server();
    // The original client's load: 4 connections × 5 requests of fib(500000), one at a time.
    let r = load::run(&spec(addr)).await.unwrap();
    assert_eq!(r.errors, Default::default(), "notes: {:?}", r.notes);
    assert_eq!((r.ok, r.sent), (20, 20));
    assert_eq!(r.latency.count, 20);
    assert!(r.server.is_none() && r.queue.is_none() && r.compute.is_none());

    let port = addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("run.json");
    let (ok, stdout, stderr) =
        load_bin(&["--port", &port, "--json", json_path.to_str().unwrap()]).await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("20 ok, 0 failed"), "{stdout}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(saved["report"]["ok"], 20);
    assert_eq!(saved["spec"]["connections"], 4);
    assert!(saved["environment"]["cores"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn wrong_results_are_mismatches_and_fail_the_run() {
    assert_ne!(Kernel::Fib.expected(10), 12345);
    let addr = fake(|mut s| async move {
        while let Some(req) = read_json(&mut s).await {
            write_json(&mut s, &json!({"id": req["id"], "result": 12345})).await;
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 2,
        stop: Stop::Requests(3),
        size: 10,
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(errors(&r, "mismatch"), 6);
    assert_eq!(r.total_errors(), 6);
    assert!(r.notes.iter().any(|n| n.contains("12345")), "{:?}", r.notes);

    let port = addr.port().to_string();
    let (ok, stdout, _) = load_bin(&["--port", &port, "--size", "10", "-r", "2"]).await;
    assert!(!ok, "a run with only wrong results must fail: {stdout}");
    assert!(stdout.contains("mismatch 8"), "{stdout}");
}

#[tokio::test]
async fn a_huge_declared_length_is_a_bad_reply_not_an_allocation() {
    let addr = fake(|mut s| async move {
        if read_json(&mut s).await.is_some() {
            let _ = s.write_all(&u32::MAX.to_be_bytes()).await;
            // Hold the connection open: the driver must give up on its own, at once.
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await;
    let started = Instant::now();
    let r = load::run(&LoadSpec {
        connections: 1,
        stop: Stop::Requests(1),
        timeout: Duration::from_secs(20),
        ..spec(addr)
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(errors(&r, "bad_reply"), 1);
    assert_eq!(errors(&r, "connection"), 1, "the request in flight is lost");
    assert_eq!(r.ok, 0);
    assert!(
        r.notes.iter().any(|n| n.contains("4294967295")),
        "{:?}",
        r.notes
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_gives_connection_errors_without_hanging() {
    let addr = fake(|s| async move { drop(s) }).await;
    let started = Instant::now();
    let r = load::run(&LoadSpec {
        connections: 3,
        ..spec(addr)
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.ok, 0);
    assert!(errors(&r, "connection") >= 3, "{:?}", r.errors);

    let port = addr.port().to_string();
    let (ok, stdout, _) = load_bin(&["--port", &port]).await;
    assert!(!ok, "nothing was measured: {stdout}");
    assert!(stdout.contains("no correct reply"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = load::run(&spec(addr)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
    assert!(err.contains("is the server running?"), "{err}");

    let port = addr.port().to_string();
    let (ok, _, stderr) = load_bin(&["--port", &port]).await;
    assert!(!ok);
    assert!(stderr.contains("connection refused"), "{stderr}");
}

#[tokio::test]
async fn replies_match_by_id_in_any_order_and_strays_are_counted() {
    let expected = Kernel::Fib.expected(1000);
    let addr = fake(move |mut s| async move {
        let mut first_batch = true;
        loop {
            // Answer each window of four in reverse order, ids echoed as strings.
            let mut batch = Vec::new();
            for _ in 0..4 {
                match read_json(&mut s).await {
                    Some(req) => batch.push(req),
                    None => return,
                }
            }
            for req in batch.iter().rev() {
                let id = req["id"].to_string();
                write_json(&mut s, &json!({"id": id, "result": expected})).await;
            }
            if first_batch {
                first_batch = false;
                let dup = batch[0]["id"].to_string();
                write_json(&mut s, &json!({"id": dup, "result": expected})).await;
                write_json(&mut s, &json!({"id": "999999", "result": expected})).await;
            }
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 1,
        depth: 4,
        stop: Stop::Requests(8),
        size: 1000,
        timeout: Duration::from_secs(5),
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!(r.ok, 8, "{:?} {:?}", r.errors, r.notes);
    assert_eq!(errors(&r, "unmatched_id"), 2, "{:?}", r.errors);
    assert_eq!(r.total_errors(), 2);
}

#[tokio::test]
async fn a_silent_server_times_out_and_the_run_ends() {
    let addr = fake(|mut s| async move {
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let started = Instant::now();
    let r = load::run(&LoadSpec {
        connections: 2,
        depth: 2,
        stop: Stop::Requests(3),
        timeout: Duration::from_millis(300),
        ..spec(addr)
    })
    .await
    .unwrap();
    // Two windows of 300 ms each per connection: well under two seconds.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(errors(&r, "timeout"), 6, "{:?}", r.errors);
    assert_eq!(r.ok, 0);
}

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
    let port = addr.port().to_string();
    let (ok, stdout, stderr) = load_bin(&[
        "--port",
        &port,
        "--cmd",
        "ping",
        "--duration",
        "1500ms",
        "--rate",
        "300",
        "--hist-log",
        log.to_str().unwrap(),
    ])
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
    ] {
        let (ok, _, stderr) = load_bin(args).await;
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
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
