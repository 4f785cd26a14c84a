//! A bounded soak: verified well-behaved load while the faults of tests/hardening run against
//! the same server at once, for a fixed time (CI: 5 s per backend; `THREADCENTER_FULL=1`: 60 s).
//! Then the history is checked: every well-behaved request got exactly one reply, every reply
//! was right (or an error the faults explain), and the server holds no more descriptors,
//! threads or children than before, and still serves.

#[path = "hardening/attack.rs"]
#[allow(dead_code)]
mod attack;
#[path = "chaos/attacks.rs"]
mod attacks;
mod common;

use attack::{parse_frames, End};
use common::hostile::*;
use common::*;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;

/// What every thread of the soak shares: when to stop, and what went wrong.
struct Soak {
    backend: &'static str,
    addr: SocketAddr,
    pid: i32,
    until: Instant,
    violations: Mutex<Vec<String>>,
    /// How often each attack ran and each excused error came back, for the closing line.
    tally: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Soak {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    fn count(&self, what: &str) {
        *self.tally.lock().entry(what.to_string()).or_default() += 1;
    }

    fn violation(&self, what: String) {
        self.violations
            .lock()
            .push(format!("{}: {what}", self.backend));
    }

    /// A pause between attacks (pacing, not synchronisation).
    fn pause(&self, ms: std::ops::Range<u64>) {
        std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(ms)));
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Everything the server sends until it closes the connection (or `within` passes).
fn until_close(s: &mut TcpStream, within: Duration) -> (Vec<Value>, End) {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let end = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break End::StillOpen;
        }
        let _ = s.set_read_timeout(Some(left));
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => break End::Eof,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break End::Reset,
        }
    };
    (parse_frames(&bytes), end)
}

fn is_refusal(r: &Value) -> bool {
    r["error"] == "too_many_connections"
}

/// True if the connection was turned away at the connection limit.
fn refused(replies: &[Value]) -> bool {
    replies.iter().any(is_refusal)
}

// ---------------------------------------------------------------------------------------------
// The well-behaved side.

/// One persistent client pipelining up to 4 verified requests; every reply is matched to its
/// request. Returns how many it sent.
fn well_behaved(soak: &Soak, mut c: Client, client: u64, allowed: &[&str]) -> u64 {
    let mut rng = rand::thread_rng();
    let mut owed: HashMap<u64, Option<u64>> = HashMap::new();
    let mut sent = 0u64;
    loop {
        while soak.running() && owed.len() < 4 {
            let id = client << 32 | sent;
            sent += 1;
            let (req, want) = match rng.gen_range(0..3) {
                0 => {
                    let n = rng.gen_range(0..20_000);
                    let r = json!({"id": id, "cmd": "compute", "kernel": "fib", "n": n});
                    (r, Some(Kernel::Fib.expected(n)))
                }
                1 => {
                    let n = rng.gen_range(0..20_000);
                    let r = json!({"id": id, "cmd": "compute", "kernel": "sleep", "n": n});
                    (r, Some(Kernel::Sleep.expected(n)))
                }
                _ => (json!({"id": id, "cmd": "ping"}), None),
            };
            c.send(&req);
            owed.insert(id, want);
        }
        if owed.is_empty() {
            return sent;
        }
        let Some(r) = c.recv() else {
            soak.violation(format!("client {client}: closed with {} owed", owed.len()));
            return sent;
        };
        let Some(id) = r["id"].as_u64() else {
            soak.violation(format!("client {client}: reply without its id: {r}"));
            continue;
        };
        let Some(want) = owed.remove(&id) else {
            soak.violation(format!("client {client}: second or unasked reply {r}"));
            continue;
        };
        let right = match want {
            Some(v) => r["result"] == json!(v),
            None => r["pong"] == json!(true),
        };
        let excused = r["error"].as_str().is_some_and(|e| allowed.contains(&e));
        if let (false, Some(e)) = (right, r["error"].as_str()) {
            soak.count(&format!("well-behaved got {e}"));
        }
        if !right && !excused {
            soak.violation(format!("client {client}: wrong reply {r}"));
        }
    }
}

/// A client that connects anew for every few requests, as a short-lived client would; turned
/// away at the limit during a flood, it retries.
fn reconnecting(soak: &Soak) {
    let mut served = 0;
    while soak.running() {
        soak.count("reconnects");
        let s = TcpStream::connect(soak.addr).expect("connect");
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut c = Client { stream: s };
        c.send(&json!({"id": 0, "cmd": "ping"}));
        match c.recv() {
            Some(r) if r["pong"] == json!(true) => {}
            Some(r) if is_refusal(&r) => continue,
            None => continue,
            Some(r) => {
                soak.violation(format!("reconnecting client: {r}"));
                continue;
            }
        }
        for i in 1..4 {
            let r = c.compute(i, "fib", 30 + i);
            let ok = r["result"] == json!(Kernel::Fib.expected(30 + i))
                || r["error"].as_str().is_some_and(|e| e == "overloaded");
            if !ok {
                soak.violation(format!("reconnecting client: {r}"));
            }
        }
        served += 1;
        soak.pause(5..30);
    }
    if served == 0 {
        soak.violation("reconnecting client was never served".into());
    }
}

// ---------------------------------------------------------------------------------------------

/// A thread of the soak: its name and its loop.
type Attack = (&'static str, fn(&Soak));

fn chaos(backend: &'static str) {
    raise_nofile();
    let secs = scaled(5, 60);
    // The server's stderr (a line per injected panic and replaced worker) goes to a file,
    // shown when the soak fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.stderr");
    let server = Launch::new(
        backend,
        2,
        &[
            "--allow-crash",
            "--max-connections",
            "48",
            "--frame-deadline",
            "1s",
            "--idle-timeout",
            "5s",
            "--queue",
            "32",
            "--job-timeout",
            "2s",
        ],
    )
    .stderr_to(&log)
    .start();
    let pid = server.pid();
    warm_up(&server, 2);
    let before = Held::of(pid);
    let soak = Arc::new(Soak {
        backend,
        addr: server.addr,
        pid,
        until: Instant::now() + Duration::from_secs(secs),
        violations: Mutex::new(Vec::new()),
        tally: Mutex::new(Default::default()),
    });
    // Worker faults excuse `worker_crashed` and `timeout`; the overload burst, `overloaded`.
    let allowed: &'static [&'static str] = if PROCESS_POOLS.contains(&backend) {
        &["overloaded", "worker_crashed", "timeout"]
    } else {
        &["overloaded"]
    };
    // Connected and served before the first attack, so the flood cannot turn them away.
    let clients: Vec<Client> = (0..4)
        .map(|i| {
            let mut c = server.connect();
            assert_eq!(c.call(json!({"id": i, "cmd": "ping"}))["pong"], json!(true));
            c
        })
        .collect();
    let sent = std::thread::scope(|s| {
        let good: Vec<_> = clients
            .into_iter()
            .zip(0u64..)
            .map(|(c, i)| {
                let soak = &soak;
                s.spawn(move || well_behaved(soak, c, i, allowed))
            })
            .collect();
        let mut attackers: Vec<Attack> = vec![
            ("reconnecting", reconnecting),
            ("oversize", attacks::oversize),
            ("slowloris", attacks::slowloris),
            ("garbage", attacks::garbage),
            ("vanishing", attacks::vanishing),
            ("flood", attacks::flood),
            ("crash kernel", attacks::crashing),
            ("overload burst", attacks::overload),
        ];
        if PROCESS_POOLS.contains(&backend) {
            attackers.push(("worker faults", attacks::worker_faults));
        }
        for (name, attack) in attackers {
            let soak = &soak;
            std::thread::Builder::new()
                .name(name.into())
                .spawn_scoped(s, move || attack(soak))
                .expect("attacker thread");
        }
        good.into_iter()
            .map(|h| h.join().expect("well-behaved client"))
            .sum::<u64>()
    });
    let violations = soak.violations.lock().clone();
    let server_said = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    assert!(
        violations.is_empty(),
        "{} violations: {violations:#?}\nserver stderr (last lines):\n{}",
        violations.len(),
        server_said()
    );
    assert!(
        sent > 50,
        "{backend}: only {sent} well-behaved requests in {secs} s"
    );

    // Back to where it started: nothing held, no zombies, no stopped workers, still serving.
    Held::wait_back_to(before, pid, Duration::from_secs(20), backend);
    let healthy = wait_for(Duration::from_secs(10), || {
        let stopped = children(pid).0.iter().any(|&p| proc_state(p) == Some('T'));
        (zombies_below(pid).is_empty() && !stopped).then_some(())
    });
    assert!(
        healthy.is_some(),
        "{backend}: {:?}\n{}",
        tree(pid),
        server_said()
    );
    let mut c = server.connect();
    for i in 0..4 {
        assert_eq!(json_u64(&c.compute(i, "fib", 1000), "result"), 933214789);
    }
    drop(c);
    let status = server.stop(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{backend}");
    eprintln!(
        "{backend}: {sent} well-behaved requests verified over {secs} s of chaos; {:?}",
        soak.tally.lock()
    );
}

#[test]
fn chaos_process() {
    chaos("process");
}

#[test]
fn chaos_shm() {
    chaos("shm");
}

#[test]
fn chaos_rayon() {
    chaos("rayon");
}

#[test]
fn chaos_tokio() {
    chaos("tokio");
}

#[test]
fn chaos_prefork() {
    chaos("prefork");
}
