//! Shared test helpers: a real server process on port 0 and a blocking protocol client.
#![allow(dead_code)]

pub mod blocking;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use threadcenter::server::child::{Exit, ServerChild, ServerCommand, StderrTo};

pub const BIN: &str = env!("CARGO_BIN_EXE_threadcenter-bench");
pub const BACKENDS: [&str; 5] = ["process", "rayon", "tokio", "prefork", "shm"];
/// The backends whose workers are processes fed by one supervisor: pipes and shared memory.
pub const PROCESS_POOLS: [&str; 2] = ["process", "shm"];

/// How long a test server may take to say `listening on ADDR`: generous, because tests start
/// many at once on two cores.
pub const START_LIMIT: Duration = Duration::from_secs(90);

/// A `threadcenter-bench serve` child, SIGKILLed on drop if still running.
pub struct Server {
    pub child: ServerChild,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(backend: &str, workers: u32, extra: &[&str]) -> Server {
        Server::launch(
            ServerCommand::serve(BIN)
                .args(["--port", "0", "--backend", backend])
                .args(["--workers", &workers.to_string()])
                .args(extra)
                .stderr(StderrTo::Inherit),
        )
    }

    /// Starts `cmd` and waits for it to listen; panics with the reason if it does not.
    pub fn launch(cmd: ServerCommand) -> Server {
        let child = cmd.start(START_LIMIT).unwrap_or_else(|e| panic!("{e:#}"));
        Server {
            addr: child.addr(),
            child,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        self.child.signal(sig).unwrap();
    }

    /// SIGTERM, then the exit status (panics after `within`).
    pub fn stop(self, within: Duration) -> std::process::ExitStatus {
        match self.child.stop(within).exit {
            Exit::Exited(status) => status,
            other => panic!("server did not exit: {other:?}"),
        }
    }

    /// The exit status, once the server exits (panics after `within`).
    pub fn wait(mut self, within: Duration) -> std::process::ExitStatus {
        self.child
            .wait(within)
            .unwrap()
            .expect("server did not exit")
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking client speaking the framing by hand, as any foreign client would.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client { stream }
    }

    pub fn send_raw(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(v.to_string().as_bytes());
    }

    /// The next reply, or None if the server closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        let mut len = [0u8; 4];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(serde_json::from_slice(&buf).expect("reply is JSON"))
    }

    pub fn call(&mut self, v: Value) -> Value {
        self.send(&v);
        self.recv().expect("a reply")
    }

    pub fn compute(&mut self, id: u64, kernel: &str, n: u64) -> Value {
        self.call(json!({"id": id, "cmd": "compute", "kernel": kernel, "n": n}))
    }

    /// True once the server has closed this connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// The fib vectors: the repository's copy, which mirrors shared/vectors/fib.csv.
pub fn fib_vectors() -> Vec<(u64, u64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/fib.csv");
    let text = std::fs::read_to_string(path).expect("read fib vectors");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, r) = l.split_once(',').unwrap();
            (n.trim().parse().unwrap(), r.trim().parse().unwrap())
        })
        .collect()
}

/// Live (non-zombie) children of `pid`, and zombie children, from /proc.
pub fn children(pid: i32) -> (Vec<i32>, Vec<i32>) {
    let mut live = Vec::new();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may contain spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[1].parse::<i32>() == Ok(pid) {
            if fields[0] == "Z" {
                zombies.push(p);
            } else {
                live.push(p);
            }
        }
    }
    (live, zombies)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, r)| !r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits up to `within` for each of `pids` to be gone (exited, or a zombie nobody will run
/// again); panics with `survived(pid)` for the first that is not.
pub fn assert_gone(
    pids: impl IntoIterator<Item = i32>,
    within: Duration,
    survived: impl Fn(i32) -> String,
) {
    for pid in pids {
        let gone = wait_for(within, || (!alive(pid)).then_some(()));
        assert!(gone.is_some(), "{}", survived(pid));
    }
}

/// The server's `w` worker processes (its direct children; a fixture worker may have its own),
/// once that many are running.
pub fn workers_of(server: &Server, w: usize) -> Vec<i32> {
    wait_for(Duration::from_secs(10), || {
        let live = children(server.pid()).0;
        (live.len() == w).then_some(live)
    })
    .unwrap_or_else(|| panic!("expected {w} workers: {:?}", hostile::tree(server.pid())))
}

pub fn json_u64(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A random version-4 UUID string, as Python's `uuid.uuid4()` gives the original client.
pub fn uuid4() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Attack tooling for tests/hardening.rs and tests/chaos.rs.
pub mod hostile;

/// The example cdylib of `lib:` kernels (`examples/native`: `friendly`, `unfriendly`,
/// `fragile`), built once per test binary into target/, so `cargo test` needs nothing else.
pub fn native_example() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = root.join("target/examples-native");
            let cargo = std::env::var("CARGO")
                .ok()
                .or(option_env!("CARGO").map(String::from))
                .unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "--offline",
                    "--manifest-path",
                ])
                .arg(root.join("examples/native/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .expect("run cargo to build examples/native");
            assert!(status.success(), "building examples/native failed");
            target.join("release/libthreadcenter_example_native.so")
        })
        .clone()
}
