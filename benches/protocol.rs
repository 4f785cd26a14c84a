//! What the wire protocol costs per request on the server side, with no sockets.
//!
//! - `protocol/parse/<shape>`: one request payload to a [`Request`] (the typed fast path), and
//!   one malformed payload through the slower diagnosing path.
//! - `protocol/encode/<shape>`: one reply to its JSON payload, length prefix included, as the
//!   server's writer produces it.
//! - `protocol/frames/<count>`: splitting a buffer of pipelined request frames with the
//!   server's [`FrameReader`] and parsing each, per frame; `1` is a lone request, `64` a full
//!   in-flight window arriving in one read.
//!
//! Together they bound the server's per-request CPU outside the backend: parse + encode +
//! one frame split. Each group runs for about three seconds (short windows, few samples).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use threadcenter::connection::{put_frame, put_frame_with, FrameReader, ReadLimits};
use threadcenter::protocol::{
    parse_request, ErrorCode, ErrorReply, Id, Reply, Request, Timings, DEFAULT_MAX_FRAME,
};

/// Request payloads as clients send them: the load driver's shapes and the original Python
/// client's (string ids, extra whitespace).
const REQUESTS: [(&str, &str); 6] = [
    ("ping", r#"{"id":123456,"cmd":"ping"}"#),
    // The driver's timed ping: its ids carry a random run tag in the top 24 bits
    // (`load::ids`), so most have 19 or 20 digits.
    (
        "driver_ping",
        r#"{"id":13835058076757001426,"cmd":"ping","timing":true}"#,
    ),
    (
        "compute",
        r#"{"id":123456,"cmd":"compute","n":500000,"kernel":"fib","timing":true}"#,
    ),
    (
        "compute_string_id",
        r#"{"id": "6f1c2a7e-5b0d-4f57-9a57-3f1f0c9e4b21", "cmd": "compute", "n": 500000}"#,
    ),
    (
        "unknown_fields",
        r#"{"id":7,"cmd":"compute","n":500000,"client":"python","retries":[1,2,3]}"#,
    ),
    // Wrong type for `n`: the typed parse fails and the diagnosing parse runs.
    ("bad_field", r#"{"id":7,"cmd":"compute","n":"lots"}"#),
];

fn group_config<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

fn parse(c: &mut Criterion) {
    let mut group = group_config(c, "protocol/parse");
    group.throughput(Throughput::Elements(1));
    for (name, payload) in REQUESTS {
        let ok = parse_request(payload.as_bytes()).is_ok();
        assert_eq!(ok, name != "bad_field", "{name} parsed unexpectedly");
        group.bench_with_input(BenchmarkId::from_parameter(name), payload, |b, p| {
            b.iter(|| parse_request(black_box(p.as_bytes())))
        });
    }
    group.finish();
}

fn replies() -> Vec<(&'static str, Reply)> {
    let t = Timings {
        queue_us: 12.5,
        compute_us: 4_012.25,
        server_us: 4_101.0,
    };
    vec![
        (
            "pong",
            Reply::Pong {
                id: Id::Num(123_456),
                t: None,
            },
        ),
        (
            "result",
            Reply::Result {
                id: Id::Num(123_456),
                result: 987_654_321,
                t: None,
            },
        ),
        (
            "result_timed",
            Reply::Result {
                id: Id::Num(123_456),
                result: 987_654_321,
                t: Some(t),
            },
        ),
        (
            "error",
            Reply::Error(ErrorReply::new(
                Some(Id::Str("6f1c2a7e-5b0d-4f57-9a57-3f1f0c9e4b21".into())),
                ErrorCode::Overloaded,
                "job queue full (4096 waiting)",
            )),
        ),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = group_config(c, "protocol/encode");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    for (name, reply) in replies() {
        group.bench_with_input(BenchmarkId::from_parameter(name), &reply, |b, r| {
            b.iter(|| {
                out.clear();
                put_frame_with(&mut out, |o| black_box(r).encode_into(o));
                out.len()
            })
        });
    }
    group.finish();
}

fn frames(c: &mut Criterion) {
    let mut group = group_config(c, "protocol/frames");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let (_, payload) = REQUESTS[1];
    for count in [1usize, 64] {
        let mut wire = Vec::new();
        for _ in 0..count {
            put_frame(&mut wire, payload.as_bytes());
        }
        group.throughput(Throughput::Elements(count as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(count),
            &wire,
            |b, wire: &Vec<u8>| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut reader = FrameReader::new(wire.as_slice(), DEFAULT_MAX_FRAME);
                        let mut seen = 0;
                        while let Ok(Some(frame)) = reader.read_frame(ReadLimits::NONE).await {
                            let req: Request = match parse_request(frame) {
                                Ok(r) => r,
                                Err(e) => panic!("benchmark request refused: {e:?}"),
                            };
                            black_box(req);
                            seen += 1;
                        }
                        assert_eq!(seen, count);
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = parse, encode, frames
}
criterion_main!(benches);
