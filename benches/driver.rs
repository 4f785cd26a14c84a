//! What the load driver costs per request, so a run can tell the driver's limits from the
//! server's.
//!
//! - `driver/codec`: encode one request, parse its reply, match and verify it: the CPU the
//!   driver spends per request outside the kernel's socket calls.
//! - `driver/ping_end_to_end`: a whole `load::run` of pings against a minimal in-process ping
//!   server (on its own thread), reported in requests per second. It includes the server's share
//!   and the loopback stack, so it is a floor on what the driver sustains, not a ceiling.
//!
//! - `driver_ceiling/rayon_ping_c16d16`: the driver's own ceiling, replies per second on one
//!   driver thread against the real `serve` binary with its fastest backend for this shape
//!   (`rayon`, docs/PERFORMANCE.md's ping table). It prints, after the run, the driver thread's
//!   busy share and the replies per busy second: on a machine where the server's I/O thread
//!   shares the cores with the driver, that is the figure a driver thread could reach alone.
//!   `load::threads::REPLIES_PER_THREAD` is planned from it.
//!
//! The file runs in well under a minute: few samples, short windows, no plots.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use threadcenter::connection::{peek_frame, put_frame_with, HEADER};
use threadcenter::kernel::Kernel;
use threadcenter::load::verify::{check, parse_reply, Encoder, Verdict};
use threadcenter::load::{self, Cmd, LoadSpec, Stop};
use threadcenter::protocol::{parse_request, Reply};
use threadcenter::server::child::{ServerCommand, StderrTo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn codec(c: &mut Criterion) {
    let spec = LoadSpec {
        size: 500_000,
        ..LoadSpec::default()
    };
    let expected = Kernel::Fib.expected(spec.size);
    let encoder = Encoder::new(&spec);
    let reply = format!(
        r#"{{"id":123456,"result":{expected},"t":{{"queue_us":12.5,"compute_us":4000.25,"server_us":4050.0}}}}"#
    );
    let mut out = Vec::with_capacity(128);
    let mut group = c.benchmark_group("driver");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    group.bench_function("codec", |b| {
        b.iter(|| {
            out.clear();
            encoder.encode(0, black_box(123_456), &mut out);
            let parsed = parse_reply(black_box(reply.as_bytes())).ok();
            let ok = parsed.map(|p| {
                check(
                    &p.reply,
                    Cmd::Compute,
                    Some(Kernel::Fib),
                    expected,
                    spec.size,
                )
            });
            assert!(matches!(ok, Some(Verdict::Ok(Some(_)))));
            out.len()
        })
    });
    group.finish();
}

/// A ping server on its own thread and runtime: reads whatever has arrived, answers every
/// complete frame in one write.
fn ping_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("bound address");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let (mut inbuf, mut out) = (Vec::with_capacity(16 * 1024), Vec::new());
                    let mut chunk = vec![0u8; 16 * 1024];
                    loop {
                        let n = match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        inbuf.extend_from_slice(&chunk[..n]);
                        let mut at = 0;
                        while let Ok(Some(frame)) = peek_frame(&inbuf[at..], usize::MAX) {
                            if let Ok(req) = parse_request(frame) {
                                let reply = Reply::Pong {
                                    id: req.id,
                                    t: None,
                                };
                                put_frame_with(&mut out, |o| reply.encode_into(o));
                            }
                            at += HEADER + frame.len();
                        }
                        inbuf.drain(..at);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                });
            }
        });
    });
    addr
}

fn ping_end_to_end(c: &mut Criterion) {
    const CONNECTIONS: u32 = 4;
    const PER_CONNECTION: u64 = 5_000;
    let addr = ping_server();
    let spec = pings(addr, CONNECTIONS, PER_CONNECTION);
    // The driver's own runtime, as `threadcenter-bench load` builds it: one thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("driver runtime");
    let mut group = c.benchmark_group("driver");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(
            u64::from(CONNECTIONS) * PER_CONNECTION,
        ));
    group.bench_function("ping_end_to_end", |b| {
        b.iter_custom(|iters| timed_runs(&rt, &spec, iters, |_| ()))
    });
    group.finish();
}

/// Pings at depth 16 on `connections`, `per_connection` each, without server timings.
fn pings(addr: SocketAddr, connections: u32, per_connection: u64) -> LoadSpec {
    LoadSpec {
        addr,
        connections,
        depth: 16,
        stop: Stop::Requests(per_connection),
        cmd: Cmd::Ping,
        timing: false,
        ..LoadSpec::default()
    }
}

/// Runs `spec` `iters` times on `rt`; returns the time the runs took, after handing each
/// error-free report to `seen`.
fn timed_runs(
    rt: &tokio::runtime::Runtime,
    spec: &LoadSpec,
    iters: u64,
    mut seen: impl FnMut(&load::LoadReport),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        let report = rt.block_on(load::run(spec)).expect("the server answers");
        total += started.elapsed();
        assert_eq!(report.total_errors(), 0, "{:?}", report.notes);
        seen(&report);
    }
    total
}

fn ceiling(c: &mut Criterion) {
    const CONNECTIONS: u32 = 16;
    const PER_CONNECTION: u64 = 5_000;
    let server = ServerCommand::serve(env!("CARGO_BIN_EXE_threadcenter-bench"))
        .args(["--port", "0", "--workers", "2", "--backend", "rayon"])
        .stderr(StderrTo::Inherit)
        .start(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let spec = pings(server.addr(), CONNECTIONS, PER_CONNECTION);
    assert_eq!(load::threads::driver_threads(64, &spec), 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("driver runtime");
    let (mut replies, mut busy_s, mut wall_s) = (0u64, 0.0f64, 0.0f64);
    let mut group = c.benchmark_group("driver_ceiling");
    group.sample_size(10).throughput(Throughput::Elements(
        u64::from(CONNECTIONS) * PER_CONNECTION,
    ));
    group.bench_function("rayon_ping_c16d16", |b| {
        b.iter_custom(|iters| {
            timed_runs(&rt, &spec, iters, |report| {
                replies += report.ok;
                busy_s += report.driver_busy.iter().sum::<f64>() * report.wall_s;
                wall_s += report.wall_s;
            })
        })
    });
    group.finish();
    if busy_s > 0.0 {
        eprintln!(
            "driver_ceiling: {:.0} replies/s on one driver thread, {:.0}% busy: {:.0} replies per busy second",
            replies as f64 / wall_s,
            100.0 * busy_s / wall_s,
            replies as f64 / busy_s
        );
    }
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = codec, ping_end_to_end, ceiling
}
criterion_main!(benches);
