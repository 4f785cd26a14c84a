//! The server over real TCP, on every backend: results, pipelining, errors, faults, shutdown.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use threadcenter::kernel::Kernel;

fn for_each_backend(f: impl Fn(&str)) {
    for b in BACKENDS {
        f(b);
    }
}

#[test]
fn fib_results_equal_the_vectors_on_every_backend() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &[]);
        let mut c = server.connect();
        for (i, (n, want)) in fib_vectors().into_iter().enumerate() {
            let r = c.compute(i as u64, "fib", n);
            assert_eq!(
                r["result"].as_u64(),
                Some(want),
                "{backend}: fib({n}) -> {r}"
            );
            assert_eq!(r["id"], json!(i), "{backend}");
        }
    });
}

#[test]
fn every_kernel_returns_its_documented_value_on_every_backend() {
    let sizes: &[(Kernel, &[u64])] = &[
        (Kernel::Fib, &[0, 1, 7, 1000]),
        (Kernel::Alloc, &[0, 1, 500]),
        (Kernel::Fault, &[0, 1, 16]),
        (Kernel::Tlb, &[0, 1, 50]),
        (Kernel::Mprotect, &[0, 1, 50]),
        (Kernel::Munmap, &[0, 1, 50]),
        (Kernel::Shared, &[0, 1, 1000]),
        (Kernel::Gil, &[0, 1, 5000]),
        (Kernel::Sleep, &[0, 1, 200]),
    ];
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &[]);
        let mut c = server.connect();
        let mut id = 0;
        for (k, ns) in sizes {
            for &n in *ns {
                id += 1;
                let r = c.compute(id, k.name(), n);
                assert_eq!(
                    r["result"].as_u64(),
                    Some(k.expected(n)),
                    "{backend}: {}({n}) -> {r}",
                    k.name()
                );
            }
        }
    });
}

#[test]
fn table_kernel_is_served_from_a_preloaded_table() {
    // One backend of each kind is enough: the table is big, building it costs a second each.
    for backend in ["process", "rayon"] {
        let server = Server::start(backend, 1, &["--preload", "table"]);
        let mut c = server.connect();
        for n in [0, 1, 1000] {
            let r = c.compute(n, "table", n);
            assert_eq!(
                r["result"].as_u64(),
                Some(Kernel::Table.expected(n)),
                "{backend}"
            );
        }
    }
}

#[test]
fn ping_has_the_original_shape() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 1, &[]);
        let mut c = server.connect();
        let r = c.call(json!({"id": "p-1", "cmd": "ping"}));
        assert_eq!(
            r,
            json!({"id": "p-1", "ok": true, "pong": true}),
            "{backend}"
        );
        let r = c.call(json!({"id": 9, "cmd": "ping", "timing": true}));
        assert_eq!(r["pong"], json!(true));
        assert!(r["t"]["server_us"].as_f64().unwrap() >= 0.0, "{r}");
    });
}

#[test]
fn pipelined_requests_on_many_connections_get_exactly_one_reply_each() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &[]);
        let handles: Vec<_> = (0..8u64)
            .map(|conn| {
                let addr = server.addr;
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    // 8 in flight at once, sizes varied so replies can overtake each other.
                    let sent: HashMap<u64, u64> = (0..8u64)
                        .map(|i| (conn * 100 + i, 1 + (i * 7919) % 20000))
                        .collect();
                    for (&id, &n) in &sent {
                        c.send(&json!({"id": id, "cmd": "compute", "n": n, "timing": true}));
                    }
                    let mut seen = HashMap::new();
                    for _ in 0..sent.len() {
                        let r = c.recv().expect("reply");
                        let id = json_u64(&r, "id");
                        assert!(seen.insert(id, r.clone()).is_none(), "two replies for {id}");
                        let n = sent[&id];
                        assert_eq!(json_u64(&r, "result"), Kernel::Fib.expected(n));
                        let t = &r["t"];
                        for f in ["queue_us", "compute_us", "server_us"] {
                            assert!(t[f].as_f64().is_some(), "timing {f} missing: {r}");
                        }
                    }
                    assert_eq!(seen.len(), sent.len());
                })
            })
            .collect();
        for h in handles {
            h.join()
                .unwrap_or_else(|_| panic!("{backend}: a connection failed"));
        }
    });
}

#[test]
fn a_panicking_job_gets_job_panicked_and_the_server_keeps_serving() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &["--allow-crash"]);
        let mut c = server.connect();
        let r = c.compute(1, "crash", 0);
        assert_eq!(r["error"], json!("job_panicked"), "{backend}: {r}");
        assert_eq!(r["id"], json!(1));
        for i in 0..4 {
            let r = c.compute(10 + i, "fib", 1000);
            assert_eq!(json_u64(&r, "result"), 933214789, "{backend}");
        }
        let mut other = server.connect();
        assert_eq!(json_u64(&other.compute(99, "fib", 10), "result"), 8360);
    });
}

#[test]
fn crash_kernel_is_refused_without_allow_crash() {
    let server = Server::start("rayon", 1, &[]);
    let mut c = server.connect();
    let r = c.compute(1, "crash", 1);
    assert_eq!(r["error"], json!("unknown_kernel"), "{r}");
    assert!(r["detail"].as_str().unwrap().contains("--allow-crash"));
}

#[test]
fn the_original_python_client_gets_its_answer() {
    // Exactly what the original client sends: one object per frame, a uuid4 id, n = 500000,
    // one request at a time per connection.
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &[]);
        for _ in 0..2 {
            let mut c = server.connect();
            let id = uuid4();
            let payload = format!(r#"{{"id": "{id}", "cmd": "compute", "n": 500000}}"#);
            c.send_raw(payload.as_bytes());
            assert_eq!(
                c.recv().unwrap(),
                json!({"id": id, "result": 869502129}),
                "{backend}"
            );
        }
    });
}

#[test]
fn content_errors_keep_the_connection_and_framing_errors_close_it() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 1, &["--max-frame", "1024"]);
        let mut c = server.connect();
        let cases: Vec<(Vec<u8>, &str, Value)> = vec![
            (b"{not json".to_vec(), "bad_json", Value::Null),
            (
                br#"{"id": 1, "cmd": "fly"}"#.to_vec(),
                "unknown_cmd",
                json!(1),
            ),
            (
                br#"{"id": 2, "cmd": "compute", "kernel": "nope", "n": 1}"#.to_vec(),
                "unknown_kernel",
                json!(2),
            ),
            (
                br#"{"id": 3, "cmd": "compute", "n": 18446744073709551615}"#.to_vec(),
                "n_out_of_range",
                json!(3),
            ),
            (
                br#"{"id": 4, "cmd": "compute", "n": -1}"#.to_vec(),
                "n_out_of_range",
                json!(4),
            ),
            (
                br#"{"id": 5, "cmd": "compute", "n": "x"}"#.to_vec(),
                "bad_request",
                json!(5),
            ),
            (br#"[1, 2, 3]"#.to_vec(), "bad_request", Value::Null),
            (vec![0xff, 0xfe], "bad_json", Value::Null),
            (
                format!(r#"{{"id": "{}", "cmd": "ping"}}"#, "x".repeat(300)).into_bytes(),
                "id_too_long",
                Value::Null,
            ),
        ];
        for (payload, code, id) in cases {
            c.send_raw(&payload);
            let r = c
                .recv()
                .unwrap_or_else(|| panic!("{backend}: closed after {code}"));
            assert_eq!(r["error"], json!(code), "{backend}: {r}");
            assert_eq!(r["id"], id, "{backend}: {r}");
            assert!(!r["detail"].as_str().unwrap().is_empty());
        }
        // Still usable after every content error.
        assert_eq!(json_u64(&c.compute(7, "fib", 10), "result"), 8360);
        // A declared length over the limit: frame_too_large, then the server closes.
        c.stream.write_all_len(2048);
        let r = c.recv().expect("frame_too_large reply");
        assert_eq!(r["error"], json!("frame_too_large"), "{backend}: {r}");
        assert!(
            c.is_closed(),
            "{backend}: connection must close after a framing error"
        );
        // Other clients are unaffected.
        assert_eq!(
            json_u64(&server.connect().compute(8, "fib", 10), "result"),
            8360
        );
    });
}

#[test]
fn a_duplicate_in_flight_id_is_refused_and_the_first_job_is_unaffected() {
    let server = Server::start("rayon", 1, &[]);
    let mut c = server.connect();
    c.send(&json!({"id": "same", "cmd": "compute", "kernel": "sleep", "n": 300000}));
    c.send(&json!({"id": "same", "cmd": "compute", "kernel": "fib", "n": 10}));
    let first = c.recv().unwrap();
    assert_eq!(first["error"], json!("duplicate_id"), "{first}");
    let second = c.recv().unwrap();
    assert_eq!(json_u64(&second, "result"), Kernel::Sleep.expected(300000));
    // Once answered, the id is free again.
    assert_eq!(
        json_u64(
            &c.call(json!({"id": "same", "cmd": "compute", "n": 10})),
            "result"
        ),
        8360
    );
}

trait WriteLen {
    fn write_all_len(&mut self, len: u32);
}

impl WriteLen for std::net::TcpStream {
    fn write_all_len(&mut self, len: u32) {
        use std::io::Write;
        self.write_all(&len.to_be_bytes()).unwrap();
    }
}

#[test]
fn sigterm_drains_in_flight_jobs_then_exits_zero() {
    for_each_backend(|backend| {
        let server = Server::start(backend, 2, &[]);
        let mut c = server.connect();
        for i in 0..4u64 {
            c.send(&json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": 200000}));
        }
        // Requests are read in order and pings answered at once: the pong proves the four
        // jobs were accepted before the signal.
        c.send(&json!({"id": 99, "cmd": "ping"}));
        let mut replies = vec![c.recv().unwrap()];
        if replies[0]["pong"] != json!(true) {
            // prefork computes inline, so the pong may queue behind the jobs; fine either way.
            replies.push(c.recv().unwrap());
        }
        server.signal(nix::sys::signal::Signal::SIGTERM);
        while replies.len() < 5 {
            replies.push(c.recv().expect("every in-flight job is answered"));
        }
        let mut ids: Vec<u64> = replies.iter().map(|r| json_u64(r, "id")).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3, 99], "{backend}");
        for r in &replies {
            assert!(r.get("error").is_none(), "{backend}: {r}");
        }
        let status = server.wait(Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "{backend}");
    });
}

#[test]
fn queued_jobs_of_a_vanished_client_are_dropped_not_run() {
    for backend in ["process", "rayon", "tokio"] {
        let server = Server::start(backend, 1, &[]);
        let mut c = server.connect();
        // One worker: the first 1 s job runs, five more wait (on `process` one of them may
        // already sit in the worker's pipe, and will run).
        for i in 0..6u64 {
            c.send(&json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": 1_000_000}));
        }
        // The pong proves the six requests were read and handed to the backend.
        assert_eq!(
            c.call(json!({"id": 99, "cmd": "ping"}))["pong"],
            json!(true)
        );
        // Vanish with a reset, as a crashed client does.
        socket2::SockRef::from(&c.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
        let start = std::time::Instant::now();
        let mut next = server.connect();
        assert_eq!(json_u64(&next.compute(1, "fib", 10), "result"), 8360);
        // Running the five queued jobs would take at least 5 s more; dropped, the next client
        // waits for at most the running job and one already in a worker's pipe.
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_millis(3500),
            "{backend}: the next client waited {waited:?}: the vanished client's queued jobs ran"
        );
    }
}
