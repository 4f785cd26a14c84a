//! The attackers of the chaos soak. Each loops until the soak ends; any of them may be turned
//! away at the connection limit while the flood runs, which is fine.

use crate::attack::End;
use crate::common::children;
use crate::common::Client;
use crate::{frame, is_refusal, refused, until_close, Soak};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;

pub fn oversize(soak: &Soak) {
    while soak.running() {
        soak.count("oversize prefixes");
        let mut s = TcpStream::connect(soak.addr).expect("connect");
        let _ = s.write_all(&u32::MAX.to_be_bytes());
        let (replies, end) = until_close(&mut s, Duration::from_secs(5));
        let fine = end != End::StillOpen
            && (refused(&replies) || replies.iter().all(|r| r["error"] == "frame_too_large"));
        if !fine {
            soak.violation(format!("oversize prefix: {replies:?} {end:?}"));
        }
        soak.pause(20..80);
    }
}

pub fn slowloris(soak: &Soak) {
    while soak.running() {
        soak.count("slowloris connections");
        let mut s = TcpStream::connect(soak.addr).expect("connect");
        let started = Instant::now();
        let payload = frame(br#"{"id": "slow", "cmd": "ping"}"#);
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut closed = false;
        for b in payload {
            if s.write_all(&[b]).is_err() {
                closed = true;
                break;
            }
            let mut probe = [0u8; 512];
            match s.read(&mut probe) {
                Ok(_) => {
                    closed = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        if !closed {
            soak.violation(format!(
                "slowloris still open after {:?}",
                started.elapsed()
            ));
        }
    }
}

pub fn garbage(soak: &Soak) {
    let mut rng = rand::thread_rng();
    let fixed: [&[u8]; 6] = [
        b"{nope",
        b"\xff\xfe",
        br#"{"id": "\ud800", "cmd": "ping"}"#,
        br#"{"id": 1, "cmd": "compute", "n": -1}"#,
        br#"{"id": 1, "id": 2, "cmd": "ping"}"#,
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ];
    while soak.running() {
        soak.count("garbage connections");
        let mut s = TcpStream::connect(soak.addr).expect("connect");
        let mut wire = Vec::new();
        let count = rng.gen_range(1..8);
        for _ in 0..count {
            let p: Vec<u8> = if rng.gen_bool(0.5) {
                fixed[rng.gen_range(0..fixed.len())].to_vec()
            } else {
                (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect()
            };
            wire.extend_from_slice(&frame(&p));
        }
        wire.extend_from_slice(&frame(br#"{"id": "after", "cmd": "ping"}"#));
        let _ = s.write_all(&wire);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let (replies, end) = until_close(&mut s, Duration::from_secs(10));
        let whole = replies.len() == count + 1 && replies[count]["pong"] == json!(true);
        if !(refused(&replies) || whole && end == End::Eof) {
            soak.violation(format!("garbage: {count} frames got {replies:?} {end:?}"));
        }
        soak.pause(10..50);
    }
}

pub fn vanishing(soak: &Soak) {
    let mut rng = rand::thread_rng();
    while soak.running() {
        soak.count("vanishing clients");
        let mut s = TcpStream::connect(soak.addr).expect("connect");
        let mut wire = Vec::new();
        for i in 0..rng.gen_range(1..6) {
            let n = rng.gen_range(1_000..10_000);
            let p = json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": n});
            wire.extend_from_slice(&frame(p.to_string().as_bytes()));
        }
        let _ = s.write_all(&wire);
        if rng.gen_bool(0.5) {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
        drop(s);
        soak.pause(10..60);
    }
}

pub fn flood(soak: &Soak) {
    while soak.running() {
        soak.count("floods of 60");
        let held: Vec<TcpStream> = (0..60)
            .filter_map(|_| TcpStream::connect(soak.addr).ok())
            .collect();
        soak.pause(200..400);
        drop(held);
        soak.pause(300..800);
    }
}

pub fn crashing(soak: &Soak) {
    // n = 0 panics inside the job; n = 1 aborts its process, which only the process backend
    // survives (the worker is replaced).
    let abort = crate::common::PROCESS_POOLS.contains(&soak.backend);
    let mut rng = rand::thread_rng();
    while soak.running() {
        soak.count("crash jobs");
        let s = TcpStream::connect(soak.addr).expect("connect");
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut c = Client { stream: s };
        let n = u64::from(abort && rng.gen_bool(0.5));
        c.send(&json!({"id": 1, "cmd": "compute", "kernel": "crash", "n": n}));
        match c.recv() {
            Some(r) if is_refusal(&r) => {}
            Some(r) => {
                let ok = ["job_panicked", "worker_crashed", "overloaded", "timeout"];
                if !r["error"].as_str().is_some_and(|e| ok.contains(&e)) {
                    soak.violation(format!("crash kernel: {r}"));
                }
            }
            None => {}
        }
        soak.pause(100..300);
    }
}

pub fn overload(soak: &Soak) {
    while soak.running() {
        soak.count("overload bursts of 64");
        let mut s = TcpStream::connect(soak.addr).expect("connect");
        let mut wire = Vec::new();
        for i in 0..64 {
            let p = json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": 3000});
            wire.extend_from_slice(&frame(p.to_string().as_bytes()));
        }
        let _ = s.write_all(&wire);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let (replies, end) = until_close(&mut s, Duration::from_secs(20));
        if !refused(&replies) {
            let mut ids: Vec<u64> = replies.iter().filter_map(|r| r["id"].as_u64()).collect();
            ids.sort();
            let ok = ["overloaded", "worker_crashed", "timeout"];
            let each = replies.iter().all(|r| {
                r["result"] == json!(Kernel::Sleep.expected(3000))
                    || r["error"].as_str().is_some_and(|e| ok.contains(&e))
            });
            if ids != (0..64).collect::<Vec<_>>() || !each || end != End::Eof {
                soak.violation(format!("overload burst: {} replies {end:?}", replies.len()));
            }
        }
        soak.pause(200..500);
    }
}

/// Process backend only: kills and stops random workers. Stops end early enough that a job
/// reaches every stopped worker and its timeout replaces it before the soak ends.
pub fn worker_faults(soak: &Soak) {
    let mut rng = rand::thread_rng();
    let mut first = true;
    while soak.running() {
        soak.pause(300..900);
        let workers = children(soak.pid).0;
        if workers.is_empty() {
            continue;
        }
        let victim = Pid::from_raw(workers[rng.gen_range(0..workers.len())]);
        // A stopped worker is found out by the next job it gets, 2 s (the job timeout) later.
        let late = soak.until.saturating_duration_since(Instant::now()) < Duration::from_secs(3);
        let sig = if (first || rng.gen_bool(0.3)) && !late {
            Signal::SIGSTOP
        } else {
            Signal::SIGKILL
        };
        let _ = kill(victim, sig);
        soak.count(&format!("worker {sig}"));
        first = false;
    }
}
