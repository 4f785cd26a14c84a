//! Connection floods past `--max-connections`, also with a tiny open-file limit.

use crate::attack::*;
use crate::common::hostile::*;
use crate::common::*;
use serde_json::json;
use std::time::Duration;

/// Connects clients one at a time, each proven served by a pong, until `count` are served or
/// the server refuses one (with `too_many_connections`, or a reset that lost it). Returns the
/// served clients.
fn fill(server: &Server, count: usize, backend: &str) -> Vec<Client> {
    let mut served = Vec::new();
    for i in 0..count {
        let mut c = server.connect();
        c.send(&json!({"id": i, "cmd": "ping"}));
        match c.recv() {
            Some(r) if r["pong"] == json!(true) => served.push(c),
            Some(r) => {
                assert_eq!(r["error"], json!("too_many_connections"), "{backend}: {r}");
                break;
            }
            None => break,
        }
    }
    served
}

/// The flood: `count` connections at once, each of which must be told `too_many_connections`
/// and closed, without having sent a byte. The sockets come back open, for holding.
fn flood(server: &Server, count: usize, backend: &str) -> Vec<std::net::TcpStream> {
    let seen = runtime().block_on(async {
        let seen = connect_and_watch(server.addr, count, 100, Duration::from_secs(10)).await;
        // Out of the runtime, so the sockets outlive it.
        seen.into_iter()
            .map(|(s, seen)| (s.into_std().expect("std socket"), seen))
            .collect::<Vec<_>>()
    });
    let mut held = Vec::new();
    for (i, (stream, s)) in seen.into_iter().enumerate() {
        assert_eq!(s.end, End::Eof, "{backend}: flood connection {i}: {s:?}");
        assert_eq!(s.replies.len(), 1, "{backend}: flood connection {i}: {s:?}");
        assert_eq!(
            s.replies[0]["error"],
            json!("too_many_connections"),
            "{backend}"
        );
        held.push(stream);
    }
    held
}

/// CPU the server tree burns over `window` while nothing new happens: near zero unless some
/// loop spins.
fn idle_cpu(pid: i32, window: Duration) -> f64 {
    let before = tree_cpu_secs(pid);
    // A measurement window, not synchronisation.
    std::thread::sleep(window);
    tree_cpu_secs(pid) - before
}

/// Once the flood is gone: a fresh client is served again (refusals may lag a closed slot by a
/// moment) and the server holds no more than `before`.
fn assert_recovered(server: &Server, before: Held, backend: &str) {
    let served_again = wait_for(Duration::from_secs(10), || {
        let mut c = server.connect();
        c.send(&json!({"id": "again", "cmd": "ping"}));
        let r = c.recv()?;
        (r["pong"] == json!(true)).then_some(())
    });
    assert!(
        served_again.is_some(),
        "{backend}: not serving after the flood"
    );
    Held::wait_back_to(before, server.pid(), Duration::from_secs(10), backend);
}

#[test]
fn a_connection_flood_is_refused_without_spinning_and_new_clients_are_served_after() {
    raise_nofile();
    let max = scaled(16, 64);
    let extra = scaled(150, 1000);
    on_backends(&BACKENDS, |backend| {
        // On prefork the limit is the server's, kept by the supervisor for both children.
        let workers = 2;
        let max_arg = max.to_string();
        let server = Launch::new(backend, workers, &["--max-connections", &max_arg]).start();
        let pid = server.pid();
        warm_up(&server, workers.into());
        let before = Held::of(pid);
        let mut served = fill(&server, max, backend);
        assert_eq!(served.len(), max, "{backend}: refused below the limit");
        let held = flood(&server, extra, backend);
        let cpu = idle_cpu(pid, Duration::from_secs(1));
        assert!(
            cpu < 0.3,
            "{backend}: {cpu:.2} s of CPU in 1 s while idle at the limit"
        );
        // The clients inside the limit were never disturbed.
        for (i, c) in served.iter_mut().enumerate() {
            let r = c.call(json!({"id": 1000 + i, "cmd": "compute", "n": 10}));
            assert_eq!(json_u64(&r, "result"), 8360, "{backend}");
        }
        drop(held);
        drop(served);
        assert_recovered(&server, before, backend);
    });
}

#[test]
fn with_a_tiny_open_file_limit_the_flood_is_refused_and_the_server_recovers() {
    // 64 descriptors: the server clamps its connection limit below that, and the refusals in
    // progress during a flood may still run it out of descriptors for a moment (accept fails
    // with EMFILE); it must back off rather than spin, and recover.
    raise_nofile();
    let extra = scaled(200, 1000);
    on_backends(&BACKENDS, |backend| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("stderr");
        let workers = if backend == "prefork" { 1 } else { 2 };
        let server = Launch::new(backend, workers, &["--max-connections", "1000"])
            .nofile(64)
            .stderr_to(&log)
            .start();
        let pid = server.pid();
        warm_up(&server, workers.into());
        let before = Held::of(pid);
        let served = fill(&server, 100, backend);
        assert!(served.len() < 64, "{backend}: {} served", served.len());
        let addr = server.addr;
        let rt = runtime();
        let seen = rt.block_on(connect_and_watch(addr, extra, 100, Duration::from_secs(20)));
        for (i, (_, s)) in seen.iter().enumerate() {
            assert_ne!(
                s.end,
                End::StillOpen,
                "{backend}: flood connection {i} hangs"
            );
            assert!(s.only_errors("too_many_connections"), "{backend}: {s:?}");
        }
        let cpu = idle_cpu(pid, Duration::from_secs(1));
        assert!(
            cpu < 0.3,
            "{backend}: {cpu:.2} s of CPU in 1 s after the flood"
        );
        drop(seen);
        drop(rt);
        drop(served);
        assert_recovered(&server, before, backend);
        let status = server.stop(Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "{backend}");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let emfile = text.matches("accept failed").count();
        eprintln!("{backend}: {emfile} accept failures backed off during the flood");
    });
}
