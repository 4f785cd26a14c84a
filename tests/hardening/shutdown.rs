//! Shutdown under load: hundreds of requests in flight, a drain that runs out, a second
//! signal, and a server killed outright.

use crate::common::hostile::*;
use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;

/// Sends `count` sleep jobs of `n` µs then a ping on one connection, in one write.
fn pipeline(c: &mut Client, base: u64, count: u64, n: u64) {
    let mut wire = Vec::new();
    for i in 0..count {
        let p = json!({"id": base + i, "cmd": "compute", "kernel": "sleep", "n": n}).to_string();
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(p.as_bytes());
    }
    let p = json!({"id": format!("ping{base}"), "cmd": "ping"}).to_string();
    wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
    wire.extend_from_slice(p.as_bytes());
    std::io::Write::write_all(&mut c.stream, &wire).expect("send");
}

/// Every reply until the server closes the connection.
fn drain_replies(c: &mut Client) -> Vec<Value> {
    std::iter::from_fn(|| c.recv()).collect()
}

#[test]
fn shutdown_with_hundreds_in_flight_answers_every_one_and_exits_zero() {
    let (conns, per_conn) = scaled((8u64, 40u64), (16, 60));
    let n = 10_000; // 10 ms each
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 4, &["--drain", "20s"]).start();
        let pid = server.pid();
        let mut clients: Vec<Client> = (0..conns).map(|_| server.connect()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            pipeline(c, i as u64 * 1000, per_conn, n);
        }
        // The pong follows the jobs in each stream, so once one arrives the jobs before it
        // were read and accepted. Prefork computes inline: there the pong means done.
        let mut early: Vec<Vec<Value>> = Vec::new();
        for c in clients.iter_mut() {
            let mut got = Vec::new();
            loop {
                let r = c.recv().expect("reply before the signal");
                let pong = r["pong"] == json!(true);
                got.push(r);
                if pong || backend == "prefork" {
                    break;
                }
            }
            early.push(got);
        }
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        for (i, (c, mut got)) in clients.iter_mut().zip(early).enumerate() {
            got.extend(drain_replies(c));
            let base = i as u64 * 1000;
            let jobs: Vec<&Value> = got.iter().filter(|r| r.get("result").is_some()).collect();
            for r in &jobs {
                assert_eq!(
                    json_u64(r, "result"),
                    Kernel::Sleep.expected(n),
                    "{backend}"
                );
            }
            if backend == "prefork" {
                // Read one at a time: what was answered is a prefix, each answered once; a
                // request read after the signal is answered `shutting_down`.
                let ids: Vec<u64> = jobs.iter().map(|r| json_u64(r, "id")).collect();
                let want: Vec<u64> = (base..base + ids.len() as u64).collect();
                assert_eq!(ids, want, "{backend}");
                let refused = got
                    .iter()
                    .filter(|r| r["error"] == json!("shutting_down"))
                    .count();
                assert_eq!(got.len(), refused + jobs.len() + 1, "{backend}: {got:?}");
                assert_eq!(got.len() as u64, per_conn + 1, "{backend}: one reply each");
            } else {
                assert!(
                    got.iter().all(|r| r.get("error").is_none()),
                    "{backend}: {got:?}"
                );
                let mut ids: Vec<u64> = jobs.iter().map(|r| json_u64(r, "id")).collect();
                ids.sort();
                let want: Vec<u64> = (base..base + per_conn).collect();
                assert_eq!(ids, want, "{backend}: connection {i}");
            }
        }
        let status = server.wait(Duration::from_secs(25));
        assert_eq!(status.code(), Some(0), "{backend}");
        assert!(signalled.elapsed() < Duration::from_secs(20), "{backend}");
        assert!(
            wait_for(Duration::from_secs(5), || live_descendants(pid)
                .is_empty()
                .then_some(()))
            .is_some(),
            "{backend}: children outlived the server"
        );
    });
}

/// Every frame the server reads gets exactly one reply, shutdown or not: one connection
/// pipelines 100 jobs of 50 ms, past its in-flight cap of 64, and the signal comes while most
/// are unread. The jobs read before it run; each frame read after it is answered
/// `shutting_down` (none is left without a reply); then the connection closes.
#[test]
fn frames_read_after_the_signal_are_answered_shutting_down_none_is_dropped() {
    let n = 50_000;
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 2, &["--drain", "20s"]).start();
        let mut c = server.connect();
        pipeline(&mut c, 0, 100, n);
        let mut got = vec![c.recv().expect("a first reply")];
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        got.extend(drain_replies(&mut c));
        let of = |r: &Value| r["id"].as_u64().map_or(100, |id| id as usize);
        let mut answered = vec![0; 101];
        for r in &got {
            answered[of(r)] += 1;
            let refused = r["error"] == json!("shutting_down");
            let right = r.get("result") == Some(&json!(Kernel::Sleep.expected(n)))
                || r["pong"] == json!(true);
            assert!(refused || right, "{backend}: {r}");
        }
        assert_eq!(answered, vec![1; 101], "{backend}: one reply each: {got:?}");
        // Requests are read in order, so those that ran are the first ones.
        let ran = got.iter().filter(|r| r.get("result").is_some()).count();
        for r in &got {
            let first = of(r) < ran;
            assert_eq!(r.get("result").is_some(), first, "{backend}: {r}");
        }
        if backend != "prefork" {
            // The cap's worth were read (and admitted) before the signal.
            assert!(ran >= 64, "{backend}: only {ran} ran");
        }
        let status = server.wait(Duration::from_secs(25));
        assert_eq!(status.code(), Some(0), "{backend}");
        assert!(signalled.elapsed() < Duration::from_secs(20), "{backend}");
    });
}

/// A connection with a job still running is kept through the drain: a ping and a compute it
/// sends after the signal are answered `shutting_down` at once, its job's result follows, and
/// only then does the server close it.
#[test]
fn a_connection_with_a_job_running_is_answered_after_the_signal_until_its_job_is_done() {
    on_backends(&["process", "shm", "rayon", "tokio"], |backend| {
        let server = Launch::new(backend, 2, &["--drain", "20s"]).start();
        let addr = server.addr;
        let mut c = server.connect();
        c.send(&json!({"id": "long", "cmd": "compute", "kernel": "sleep", "n": 3_000_000}));
        // The pong says the job before it was read and handed on.
        let pong = c.call(json!({"id": "p", "cmd": "ping"}));
        assert_eq!(pong["pong"], json!(true), "{backend}: {pong}");
        server.signal(Signal::SIGTERM);
        // The listener closes once the signal is being handled.
        let draining = wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_err().then_some(())
        });
        assert!(draining.is_some(), "{backend}: SIGTERM not handled");
        c.send(&json!({"id": "late", "cmd": "ping"}));
        c.send(&json!({"id": "late2", "cmd": "compute", "kernel": "fib", "n": 10}));
        let got = drain_replies(&mut c);
        let by_id = |id: &str| -> Vec<&Value> { got.iter().filter(|r| r["id"] == id).collect() };
        for late in ["late", "late2"] {
            let replies = by_id(late);
            assert_eq!(replies.len(), 1, "{backend}: {got:?}");
            assert_eq!(
                replies[0]["error"],
                json!("shutting_down"),
                "{backend}: {got:?}"
            );
        }
        let long = by_id("long");
        assert_eq!(long.len(), 1, "{backend}: {got:?}");
        assert_eq!(
            long[0]["result"],
            json!(Kernel::Sleep.expected(3_000_000)),
            "{backend}: {got:?}"
        );
        assert_eq!(got.len(), 3, "{backend}: {got:?}");
        let status = server.wait(Duration::from_secs(25));
        assert_eq!(status.code(), Some(0), "{backend}");
    });
}

#[test]
fn when_the_drain_time_runs_out_every_accepted_request_still_gets_one_reply() {
    on_backends(&["process", "shm", "rayon", "tokio"], |backend| {
        let server = Launch::new(backend, 2, &["--drain", "1s"]).start();
        let mut c = server.connect();
        // Two running, two queued; all four outlast the drain.
        pipeline(&mut c, 0, 4, 4_000_000);
        assert_eq!(c.recv().expect("pong")["pong"], json!(true), "{backend}");
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        let got = drain_replies(&mut c);
        let status = server.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{backend}");
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "{backend}: exit took {:?} with a 1 s drain",
            signalled.elapsed()
        );
        let mut ids: Vec<u64> = got.iter().map(|r| json_u64(r, "id")).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3], "{backend}: {got:?}");
        for r in &got {
            assert_eq!(r["error"], json!("shutting_down"), "{backend}: {r}");
        }
    });
}

#[test]
fn a_second_signal_exits_at_once() {
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 2, &["--drain", "30s"]).start();
        let pid = server.pid();
        let mut c = server.connect();
        pipeline(&mut c, 0, 2, 8_000_000);
        if backend != "prefork" {
            assert_eq!(c.recv().expect("pong")["pong"], json!(true), "{backend}");
        }
        let family = tree(pid);
        server.signal(Signal::SIGTERM);
        // Only once the first signal is being handled is the next one a second signal. The
        // sign: the listener is closed; for prefork, whose busy child computes inline and
        // cannot close its listener yet, the idle child has drained and exited.
        let addr = server.addr;
        let draining = wait_for(Duration::from_secs(10), || {
            let sign = if backend == "prefork" {
                live_descendants(pid).len() < family.len() - 1
            } else {
                std::net::TcpStream::connect(addr).is_err()
            };
            sign.then_some(())
        });
        assert!(draining.is_some(), "{backend}: first SIGTERM not handled");
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        let status = server.wait(Duration::from_secs(10));
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "{backend}: second signal took {:?}",
            signalled.elapsed()
        );
        assert_eq!(status.code(), Some(130), "{backend}");
        assert_gone(family, Duration::from_secs(5), |p| {
            format!("{backend}: process {p} outlived the server")
        });
    });
}

#[test]
fn a_killed_server_leaves_no_process_behind() {
    on_backends(&["process", "shm", "prefork"], |backend| {
        let server = Launch::new(backend, 3, &[]).start();
        let pid = server.pid();
        let mut c = server.connect();
        pipeline(&mut c, 0, 3, 5_000_000);
        let family = wait_for(Duration::from_secs(10), || {
            let t = tree(pid);
            (t.len() > 3).then_some(t)
        })
        .expect("children");
        server.signal(Signal::SIGKILL);
        drop(server);
        assert_gone(family, Duration::from_secs(5), |p| {
            format!("{backend}: process {p} survived its killed server")
        });
    });
}
