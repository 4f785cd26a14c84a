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
            assert!(
                got.iter().all(|r| r.get("error").is_none()),
                "{backend}: {got:?}"
            );
            if backend == "prefork" {
                // Read one at a time: what was answered is a prefix, each answered once.
                let ids: Vec<u64> = jobs.iter().map(|r| json_u64(r, "id")).collect();
                let want: Vec<u64> = (base..base + ids.len() as u64).collect();
                assert_eq!(ids, want, "{backend}");
            } else {
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
