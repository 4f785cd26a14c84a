//! Clients that vanish mid-request, and overload far past capacity.

use crate::common::hostile::*;
use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;

#[test]
fn clients_vanishing_mid_request_leave_nothing_behind() {
    let rounds = scaled(24, 200);
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 2, &[]).start();
        let pid = server.pid();
        warm_up(&server, 2);
        let before = Held::of(pid);
        let base_rss = tree_rss_kib(pid);
        for round in 0..rounds {
            let mut c = server.connect();
            for j in 0..8u64 {
                let n = 20_000 + j;
                c.send(&json!({"id": j, "cmd": "compute", "kernel": "sleep", "n": n}));
            }
            c.send(&json!({"id": "f", "cmd": "compute", "kernel": "fib", "n": 100_000}));
            let sock = socket2::SockRef::from(&c.stream);
            match round % 4 {
                // Close with replies unread.
                0 => {}
                // Reset: the server's next read or write fails.
                1 => sock.set_linger(Some(Duration::ZERO)).expect("linger"),
                // Half-close first, as a client done sending would, then vanish.
                2 => c
                    .stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown"),
                // Vanish in the middle of a frame.
                _ => c
                    .stream
                    .write_all(&[0, 0, 0, 40, b'{'])
                    .expect("partial frame"),
            }
            drop(c);
        }
        // Queued jobs of the vanished clients finish (or are dropped) and their results go
        // nowhere; everything they held is released.
        Held::wait_back_to(before, pid, Duration::from_secs(30), backend);
        assert!(zombies_below(pid).is_empty(), "{backend}: zombies");
        let grown = tree_rss_kib(pid).saturating_sub(base_rss);
        assert!(grown < 16 * 1024, "{backend}: RSS grew {grown} KiB");
        let mut c = server.connect();
        assert_eq!(json_u64(&c.compute(1, "fib", 1000), "result"), 933214789);
    });
}

/// One open-loop client connection: sends `count` requests `every` apart from one thread and
/// reads replies on another, recording when each was sent and answered.
struct Paced {
    sent: Arc<Mutex<HashMap<u64, Instant>>>,
    replies: Vec<(Value, Instant)>,
}

fn paced(addr: std::net::SocketAddr, base: u64, count: u64, every: Duration, n: u64) -> Paced {
    let mut c = Client::connect(addr);
    let mut w = c.stream.try_clone().expect("clone");
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let log = sent.clone();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..count {
            // Open loop: request i leaves at start + i·every whatever the replies do.
            let due = start + every * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let id = base + i;
            let p = json!({"id": id, "cmd": "compute", "kernel": "sleep", "n": n, "timing": true})
                .to_string();
            let mut f = (p.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(p.as_bytes());
            log.lock().expect("log").insert(id, Instant::now());
            w.write_all(&f).expect("send");
        }
    });
    let mut replies = Vec::new();
    for _ in 0..count {
        let r = c.recv().expect("every request is answered");
        replies.push((r, Instant::now()));
    }
    writer.join().expect("writer");
    Paced { sent, replies }
}

#[test]
fn overload_at_ten_times_capacity_is_refused_at_once_while_accepted_work_flows() {
    // Prefork has no queue to bound: a busy child stops reading and TCP pushes back.
    let secs = scaled(3, 15);
    on_backends(&["process", "shm", "rayon", "tokio"], |backend| {
        // Capacity: two workers, 100 ms jobs, 20 jobs/s. Offered: 4 × 50/s = 200/s.
        let job = Duration::from_millis(100);
        let n = job.as_micros() as u64;
        let server = Launch::new(backend, 2, &["--queue", "4"]).start();
        let pid = server.pid();
        warm_up(&server, 2);
        let base_rss = tree_rss_kib(pid);
        let addr = server.addr;
        let per_conn = 50 * secs;
        let every = Duration::from_millis(20);
        let started = Instant::now();
        let mid_rss = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs) / 3);
            tree_rss_kib(pid)
        });
        let conns: Vec<_> = (0..4u64)
            .map(|c| std::thread::spawn(move || paced(addr, c * 1_000_000, per_conn, every, n)))
            .collect();
        let runs: Vec<Paced> = conns.into_iter().map(|h| h.join().expect("conn")).collect();
        let elapsed = started.elapsed();
        let mid_rss = mid_rss.join().expect("rss probe");
        let end_rss = tree_rss_kib(pid);

        let mut accepted = 0u64;
        let mut refused_latency = Vec::new();
        let mut max_queue_us = 0f64;
        for run in &runs {
            let sent = run.sent.lock().expect("log");
            let mut seen = std::collections::HashSet::new();
            for (r, at) in &run.replies {
                let id = json_u64(r, "id");
                assert!(seen.insert(id), "{backend}: two replies for {id}");
                if r["error"] == json!("overloaded") {
                    refused_latency.push(at.duration_since(sent[&id]));
                } else {
                    assert_eq!(json_u64(r, "result"), Kernel::Sleep.expected(n), "{r}");
                    max_queue_us = max_queue_us.max(r["t"]["queue_us"].as_f64().unwrap_or(0.0));
                    accepted += 1;
                }
            }
            assert_eq!(seen.len() as u64, per_conn, "{backend}");
        }
        let offered = 4 * per_conn;
        assert!(
            refused_latency.len() as u64 > offered / 2,
            "{backend}: only {} of {offered} refused at 10x capacity",
            refused_latency.len()
        );
        // Refusals do not wait behind work: a queued request waits at least one job.
        refused_latency.sort();
        let median = refused_latency[refused_latency.len() / 2];
        assert!(median < job, "{backend}: median refusal took {median:?}");
        // The queue stays bounded: no accepted job waited for more than a few jobs' time.
        assert!(
            max_queue_us < 2e6,
            "{backend}: a job queued {max_queue_us} µs"
        );
        // The workers stayed busy: at least half of what two sleeping workers complete.
        let capacity = 2.0 * elapsed.as_secs_f64() / job.as_secs_f64();
        assert!(
            accepted as f64 >= capacity / 2.0,
            "{backend}: {accepted} accepted in {elapsed:?}, capacity {capacity:.0}"
        );
        // Memory plateaus under sustained overload.
        assert!(
            end_rss.saturating_sub(mid_rss) < 8 * 1024,
            "{backend}: RSS {base_rss} → {mid_rss} → {end_rss} KiB"
        );
        assert!(end_rss.saturating_sub(base_rss) < 32 * 1024, "{backend}");
    });
}

#[test]
fn a_client_that_never_reads_its_replies_is_dropped_after_the_idle_timeout() {
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 2, &["--idle-timeout", "2s"]).start();
        let pid = server.pid();
        warm_up(&server, 2);
        let before = Held::of(pid);
        let steady = Steady::start(server.addr);
        // A small receive buffer (set before connecting, so it is not autotuned) fills fast.
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("rcvbuf");
        sock.connect(&server.addr.into()).expect("connect");
        let mut stream: std::net::TcpStream = sock.into();
        // Long ids make long replies; the client sends until the server stops taking them.
        let id = "r".repeat(200);
        let p = json!({"id": id, "cmd": "nope"}).to_string();
        let mut f = (p.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(p.as_bytes());
        let batch: Vec<u8> = f.repeat(256);
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .expect("write timeout");
        let started = Instant::now();
        let (mut sent, mut at) = (0usize, 0usize);
        let ended = loop {
            // Cycling through whole frames keeps the stream aligned across partial writes.
            match std::io::Write::write(&mut stream, &batch[at..]) {
                Ok(n) => {
                    sent += n;
                    at = (at + n) % batch.len();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break e,
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{backend}: a non-reading client is still connected after {sent} bytes"
            );
        };
        assert!(sent > 0, "{backend}: {ended}");
        // Its slot and everything queued for it are released; others were served throughout.
        steady.assert_served(backend);
        steady.assert_clean(backend);
        drop(stream);
        Held::wait_back_to(before, pid, Duration::from_secs(10), backend);
    });
}
