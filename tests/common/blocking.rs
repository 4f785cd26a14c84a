//! Watching a mechanism rather than a speedup: how often the tasks doing two jobs blocked
//! while both were in flight (voluntary context switches, from /proc). A job waiting for a
//! lock sleeps until the holder hands it over; a job that owns its lock, or has none,
//! computes without blocking. A task that merely lacks a free core is preempted, which is an
//! involuntary switch, so the count does not depend on how many cores are free.

use super::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A work size at which one `kernel` job takes 300 ms or more alone (doubling from `n`), so
/// two in flight overlap for long enough to judge.
pub fn size_for(kernel: &str, mut n: u64) -> u64 {
    let server = Server::start("rayon", 1, &[]);
    let mut c = server.connect();
    loop {
        let started = Instant::now();
        c.compute(0, kernel, n);
        if started.elapsed() >= Duration::from_millis(300) || n >= 1 << 34 {
            return n;
        }
        n *= 2;
    }
}

/// `/proc/<pid>/task/<tid>` for every thread of `pid` and of its live children.
fn tasks(pid: i32) -> Vec<PathBuf> {
    let mut pids = children(pid).0;
    pids.push(pid);
    pids.iter()
        .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
        .flat_map(|dir| dir.flatten().map(|t| t.path()))
        .collect()
}

/// Per task: CPU time so far (clock ticks) and voluntary context switches so far.
fn counters(tasks: &[PathBuf]) -> HashMap<PathBuf, (u64, u64)> {
    tasks
        .iter()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.join("stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces:
            // utime and stime are the 12th and 13th of them.
            let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let cpu = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            let status = std::fs::read_to_string(t.join("status")).ok()?;
            let voluntary = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some((t.clone(), (cpu, voluntary)))
        })
        .collect()
}

/// Whether a reply is waiting on this connection, without consuming it.
fn reply_ready(c: &Client) -> bool {
    c.stream.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let ready =
        !matches!(c.stream.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    c.stream.set_nonblocking(false).unwrap();
    ready
}

/// How many times each of the two busiest tasks of a 2-worker `backend` server blocked while
/// two `kernel` jobs were both in flight, and for how long they were.
pub fn blocks_while_both_run(backend: &str, kernel: &str, n: u64) -> ([u64; 2], Duration) {
    let server = Server::start(backend, 2, &[]);
    let mut conns: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    // Wakes both workers with a shorter job of the same kernel at once (tokio's blocking
    // threads start on first use; a thread's sub-interpreter is created on its first job).
    let warm = n / 8;
    for c in conns.iter_mut() {
        c.send(&json!({"id": 0, "cmd": "compute", "kernel": kernel, "n": warm}));
    }
    for c in conns.iter_mut() {
        let r = c.recv().expect("a reply");
        assert_eq!(r["result"], json!(threadcenter::kernel::fib(warm)), "{r}");
    }
    for c in conns.iter_mut() {
        c.send(&json!({"id": 1, "cmd": "compute", "kernel": kernel, "n": n}));
    }
    // Let both jobs reach their workers, then watch until the first reply comes back.
    std::thread::sleep(Duration::from_millis(50));
    let tasks = tasks(server.pid());
    let before = counters(&tasks);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while !conns.iter().any(reply_ready) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let after = counters(&tasks);
    let window = started.elapsed();
    for c in conns.iter_mut() {
        let r = c.recv().expect("a reply");
        assert_eq!(r["result"], json!(threadcenter::kernel::fib(n)), "{r}");
    }
    // Sized at 300 ms or more alone, the jobs overlap for 300 ms (`fib`) to 600 ms (`gil` on
    // threads) unless the machine got several times faster since the sizing.
    assert!(
        window > Duration::from_millis(50),
        "{backend} {kernel}: the jobs overlapped for only {window:?}; raise n"
    );
    // (CPU ticks, voluntary switches) over the window, busiest first.
    let mut busy: Vec<(u64, u64)> = after
        .iter()
        .filter_map(|(t, &(cpu, vol))| {
            let &(cpu0, vol0) = before.get(t)?;
            Some((cpu - cpu0, vol - vol0))
        })
        .collect();
    busy.sort_by_key(|&(cpu, _)| std::cmp::Reverse(cpu));
    assert!(busy.len() >= 2, "{backend}: fewer than two tasks to watch");
    let blocks = [busy[0].1, busy[1].1];
    eprintln!("{backend} {kernel}: over {window:?} the two busiest tasks blocked {blocks:?} times");
    (blocks, window)
}
