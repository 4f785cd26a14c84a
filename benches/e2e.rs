//! Whole round trips over loopback TCP against the real server binary, per backend.
//!
//! - `e2e/ping/<backend>/c<C>d<D>`: `ping` requests, answered on the socket side without
//!   touching the backend: the cost of the server's socket path (read, parse, encode, write).
//!   Every backend shares that code, except `prefork`, whose children run it single-threaded.
//! - `e2e/compute/<backend>/c<C>d<D>`: `compute` with `fib` at `n = 1` (nanoseconds of work):
//!   the socket path plus the hand-off to the backend and back.
//!
//! `C` connections each keep `D` requests in flight (pipelining depth) until each has had its
//! share of replies; throughput is in round trips per second. The client is deliberately lean
//! (persistent connections, preformatted requests, a substring check instead of a JSON parse)
//! so that as much of the CPU as possible goes to the server; on a 2-core machine the two still
//! share the cores. Every server runs with `--workers 2` and is started once per backend.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use threadcenter::backend::BackendKind;
use threadcenter::connection::put_frame_with;
use threadcenter::server::child::{ServerChild, ServerCommand, StderrTo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter-bench");
const WORKERS: &str = "2";

/// A `threadcenter-bench serve` process for one backend, listening on a free port.
fn start_server(backend: BackendKind) -> ServerChild {
    ServerCommand::serve(BIN)
        .args(["--port", "0", "--workers", WORKERS])
        .args(["--backend", backend.name()])
        .stderr(StderrTo::Inherit)
        .start(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// One load shape.
#[derive(Clone, Copy)]
struct Shape {
    connections: usize,
    depth: usize,
    /// Round trips per connection per iteration: enough for tens of milliseconds.
    per_connection: usize,
}

impl Shape {
    fn label(&self) -> String {
        format!("c{}d{}", self.connections, self.depth)
    }
}

const PING_SHAPES: [Shape; 3] = [
    Shape {
        connections: 1,
        depth: 1,
        per_connection: 500,
    },
    Shape {
        connections: 16,
        depth: 1,
        per_connection: 200,
    },
    Shape {
        connections: 16,
        depth: 16,
        per_connection: 1_000,
    },
];

const COMPUTE_SHAPES: [Shape; 2] = [
    Shape {
        connections: 1,
        depth: 1,
        per_connection: 500,
    },
    Shape {
        connections: 16,
        depth: 16,
        per_connection: 500,
    },
];

/// Connections to one server, kept open across iterations.
struct Client {
    rt: tokio::runtime::Runtime,
    conns: Vec<Option<TcpStream>>,
}

impl Client {
    fn connect(addr: SocketAddr, n: usize) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a client runtime");
        let conns = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let s = TcpStream::connect(addr)
                    .await
                    .expect("connect to the server");
                s.set_nodelay(true).expect("TCP_NODELAY");
                v.push(Some(s));
            }
            v
        });
        Client { rt, conns }
    }

    /// Runs one iteration: every connection completes `per_connection` round trips of `body`
    /// (everything after the id) with up to `depth` in flight. Returns the error replies.
    fn run(&mut self, body: &'static str, shape: Shape) -> usize {
        self.rt.block_on(async {
            let tasks: Vec<_> = self
                .conns
                .iter_mut()
                .map(|slot| {
                    let stream = slot
                        .take()
                        .expect("connection returned by the last iteration");
                    tokio::spawn(round_trips(stream, body, shape.depth, shape.per_connection))
                })
                .collect();
            let mut errors = 0;
            for (slot, task) in self.conns.iter_mut().zip(tasks) {
                let (stream, e) = task.await.expect("a connection task");
                *slot = Some(stream);
                errors += e;
            }
            errors
        })
    }
}

/// A closed loop on one connection: keep `depth` requests in flight until `total` replies.
async fn round_trips(
    mut stream: TcpStream,
    body: &'static str,
    depth: usize,
    total: usize,
) -> (TcpStream, usize) {
    let (mut sent, mut received, mut errors) = (0usize, 0usize, 0usize);
    let mut wbuf = Vec::with_capacity(depth * 64);
    let mut rbuf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    while received < total {
        while sent < total && sent - received < depth {
            put_frame_with(&mut wbuf, |o| {
                let _ = write!(o, "{{\"id\":{sent}{body}");
            });
            sent += 1;
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await.expect("send requests");
            wbuf.clear();
        }
        let n = stream
            .read(&mut rbuf[filled..])
            .await
            .expect("read replies");
        assert!(n > 0, "the server closed the connection");
        filled += n;
        let mut at = 0;
        while filled - at >= 4 {
            let len =
                u32::from_be_bytes([rbuf[at], rbuf[at + 1], rbuf[at + 2], rbuf[at + 3]]) as usize;
            if filled - at < 4 + len {
                break;
            }
            let reply = &rbuf[at + 4..at + 4 + len];
            if reply.windows(7).any(|w| w == b"\"error\"") {
                errors += 1;
            }
            received += 1;
            at += 4 + len;
        }
        rbuf.copy_within(at..filled, 0);
        filled -= at;
    }
    (stream, errors)
}

fn bench_cmd(c: &mut Criterion, cmd: &str, body: &'static str, shapes: &[Shape]) {
    let mut group = c.benchmark_group(format!("e2e/{cmd}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for backend in BackendKind::ALL {
        let server = start_server(backend);
        for &shape in shapes {
            let mut client = Client::connect(server.addr(), shape.connections);
            group.throughput(Throughput::Elements(
                (shape.connections * shape.per_connection) as u64,
            ));
            group.bench_function(BenchmarkId::new(backend.name(), shape.label()), |b| {
                b.iter(|| {
                    let errors = client.run(body, shape);
                    assert_eq!(errors, 0, "error replies from {}", backend.name());
                })
            });
        }
        // SIGTERM, and SIGKILL if it lingers.
        server.stop(Duration::from_secs(15));
    }
    group.finish();
}

fn ping(c: &mut Criterion) {
    bench_cmd(c, "ping", ",\"cmd\":\"ping\"}", &PING_SHAPES);
}

fn compute(c: &mut Criterion) {
    bench_cmd(
        c,
        "compute",
        ",\"cmd\":\"compute\",\"kernel\":\"fib\",\"n\":1}",
        &COMPUTE_SHAPES,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = ping, compute
}
criterion_main!(benches);
