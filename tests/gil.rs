//! The `gil` kernel on real wall time: threads serialize on the process-wide lock, worker
//! processes each have their own. Alone in its test binary so no other test competes for
//! the cores while it measures; each figure is the best of three, and the margins are wide.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// Best-of-three wall time for `k` `gil` jobs sent at once, each on its own connection.
fn wall(server: &Server, k: usize, n: u64) -> Duration {
    let mut conns: Vec<Client> = (0..k).map(|_| server.connect()).collect();
    for c in conns.iter_mut() {
        c.compute(0, "fib", 10);
    }
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for c in conns.iter_mut() {
                c.send(&json!({"id": 1, "cmd": "compute", "kernel": "gil", "n": n}));
            }
            for c in conns.iter_mut() {
                let r = c.recv().unwrap();
                assert_eq!(
                    r["result"].as_u64(),
                    Some(threadcenter::kernel::fib(n)),
                    "{r}"
                );
            }
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Two jobs at once ÷ one job, on a 2-worker server of this backend.
fn slowdown(backend: &str, n: u64) -> f64 {
    let server = Server::start(backend, 2, &[]);
    let one = wall(&server, 1, n);
    let two = wall(&server, 2, n);
    eprintln!("{backend}: one job {one:?}, two at once {two:?}");
    two.as_secs_f64() / one.as_secs_f64()
}

#[test]
fn gil_serializes_threads_but_not_processes() {
    // Size one job at 100–200 ms on this machine.
    let server = Server::start("rayon", 1, &[]);
    let mut n = 1_000_000u64;
    while wall(&server, 1, n) < Duration::from_millis(100) && n < 1 << 34 {
        n *= 2;
    }
    drop(server);
    let process = slowdown("process", n);
    for threads in ["rayon", "tokio"] {
        let t = slowdown(threads, n);
        // Threads: two jobs take about twice one job. Processes: about one job.
        assert!(
            t > 1.6,
            "{threads} should serialize: two jobs took {t:.2}x one job"
        );
        assert!(
            process < 1.4 && process < t - 0.4,
            "process should run gil jobs in parallel: {process:.2}x vs {threads} {t:.2}x"
        );
    }
}
