//! Helpers for the hardening and chaos tests: the scale switch, servers started with a custom
//! environment and limits, resource accounting of a server's process tree from /proc, a
//! well-behaved client that verifies every reply while attacks run, and the fixture workers.
//!
//! Scale: tests run at CI scale unless `THREADCENTER_FULL=1`, which selects the full
//! numbers (1,000 hostile connections, a minute of chaos). See docs/HARDENING.md.

use super::{wait_for, Client, Server, BIN};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use threadcenter::kernel::Kernel;
use threadcenter::server::child::{ServerCommand, StderrTo};

/// True when `THREADCENTER_FULL=1`: the full-scale numbers instead of CI's.
pub fn full_scale() -> bool {
    std::env::var("THREADCENTER_FULL").is_ok_and(|v| v == "1")
}

/// `ci` normally, `full` under `THREADCENTER_FULL=1`.
pub fn scaled<T>(ci: T, full: T) -> T {
    if full_scale() {
        full
    } else {
        ci
    }
}

/// Raises this test process's open-file soft limit to the hard limit: a test holding a
/// thousand sockets would otherwise hit the common default of 1,024.
pub fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Runs `f` once per backend, all at once on scoped threads named after the backend. The
/// attacks mostly wait on deadlines, so running the backends side by side keeps the wall time
/// of a test near one backend's; a failure names its backend through the thread name.
pub fn on_backends(backends: &[&str], f: impl Fn(&str) + Sync) {
    std::thread::scope(|s| {
        for &b in backends {
            let f = &f;
            std::thread::Builder::new()
                .name(format!("backend-{b}"))
                .spawn_scoped(s, move || f(b))
                .expect("spawn backend thread");
        }
    });
}

/// A `serve` command line with what the plain [`Server::start`] cannot set.
pub struct Launch {
    pub backend: String,
    pub workers: u32,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where the server's stderr goes (inherited when `None`).
    pub stderr: Option<PathBuf>,
    /// Open-file limit (soft and hard) for the server, set before it starts.
    pub nofile: Option<u64>,
}

impl Launch {
    pub fn new(backend: &str, workers: u32, args: &[&str]) -> Launch {
        Launch {
            backend: backend.to_string(),
            workers,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stderr: None,
            nofile: None,
        }
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Launch {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.env.push((key.to_string(), value));
        self
    }

    pub fn stderr_to(mut self, path: &Path) -> Launch {
        self.stderr = Some(path.to_path_buf());
        self
    }

    pub fn nofile(mut self, limit: u64) -> Launch {
        self.nofile = Some(limit);
        self
    }

    /// The `serve` command line, with its environment and limits, without its stdio.
    fn command(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0", "--backend", &self.backend])
            .args(["--workers", &self.workers.to_string()])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(limit) = self.nofile {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe; `lim` is a plain value copied in.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// The server process, started but not yet known to be listening: for servers that are
    /// meant to fail before they listen.
    pub fn spawn(&self) -> Child {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped());
        match &self.stderr {
            Some(p) => cmd.stderr(std::fs::File::create(p).expect("create stderr file")),
            None => cmd.stderr(Stdio::inherit()),
        };
        cmd.spawn().expect("start server")
    }

    /// The server, once it prints `listening on ADDR`.
    pub fn start(&self) -> Server {
        let stderr = match &self.stderr {
            Some(p) => StderrTo::File(p.clone()),
            None => StderrTo::Inherit,
        };
        Server::launch(
            ServerCommand::new(self.command())
                .named(format!("{} server", self.backend))
                .stderr(stderr),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// A process tree's resources, from /proc.

/// `pid` and every process below it.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let (live, zombies) = super::children(all[i]);
        all.extend(live);
        all.extend(zombies);
        i += 1;
    }
    all
}

/// Live descendants of `pid` (not `pid` itself, not zombies).
pub fn live_descendants(pid: i32) -> Vec<i32> {
    tree(pid)
        .into_iter()
        .skip(1)
        .filter(|&p| super::alive(p))
        .collect()
}

/// Zombie children anywhere in the tree below `pid`: children some supervisor did not reap.
pub fn zombies_below(pid: i32) -> Vec<i32> {
    tree(pid)
        .into_iter()
        .flat_map(|p| super::children(p).1)
        .collect()
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of the whole tree, KiB.
pub fn tree_rss_kib(pid: i32) -> u64 {
    tree(pid).into_iter().map(|p| status_kib(p, "VmRSS")).sum()
}

/// Address space of the whole tree, KiB: unlike RSS it also counts memory reserved but never
/// touched, so it shows a buffer sized from a declared length even before bytes fill it.
pub fn tree_vm_kib(pid: i32) -> u64 {
    tree(pid).into_iter().map(|p| status_kib(p, "VmSize")).sum()
}

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn thread_count(pid: i32) -> u64 {
    status_kib(pid, "Threads")
}

/// CPU time (user + system) the whole tree has used, seconds.
pub fn tree_cpu_secs(pid: i32) -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / hz
}

/// One-letter scheduler state (`R`, `S`, `T`, `Z`, ...) of a process.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True while `pid` is blocked inside the `sleep` kernel (a nanosleep system call), which
/// tells an executing worker from one waiting for a job (blocked in `read`).
pub fn in_sleep_kernel(pid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let Some(Ok(nr)) = text
        .split_whitespace()
        .next()
        .map(str::parse::<libc::c_long>)
    else {
        return false;
    };
    nr == libc::SYS_clock_nanosleep || nr == libc::SYS_nanosleep
}

/// What a server holds that a leak would grow: file descriptors, threads and child processes,
/// each summed over the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub fds: usize,
    pub threads: u64,
    pub children: usize,
}

impl Held {
    pub fn of(pid: i32) -> Held {
        let procs: Vec<i32> = tree(pid).into_iter().filter(|&p| super::alive(p)).collect();
        Held {
            fds: procs.iter().map(|&p| fd_count(p)).sum(),
            threads: procs.iter().map(|&p| thread_count(p)).sum(),
            children: procs.len() - 1,
        }
    }

    /// Waits until the tree holds no more than `baseline` (and exactly as many children), or
    /// panics with what is still held.
    pub fn wait_back_to(baseline: Held, pid: i32, within: Duration, what: &str) {
        let back = wait_for(within, || {
            let now = Held::of(pid);
            (now.fds <= baseline.fds
                && now.threads <= baseline.threads
                && now.children == baseline.children)
                .then_some(())
        });
        assert!(
            back.is_some(),
            "{what}: resources not back to baseline: {:?} now vs {baseline:?}",
            Held::of(pid)
        );
    }
}

/// Samples a tree's RSS in the background and keeps the largest value seen.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl RssPeak {
    pub fn start(pid: i32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = tree_rss_kib(pid);
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(tree_rss_kib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(tree_rss_kib(pid))
        });
        RssPeak { stop, handle }
    }

    /// The peak, KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("rss sampler")
    }
}

// ---------------------------------------------------------------------------------------------
// A well-behaved client that runs beside an attack.

/// Runs `2 * workers` overlapping sleep jobs, so every worker thread or process a backend
/// creates on demand exists before a baseline is taken.
pub fn warm_up(server: &Server, workers: u64) {
    let mut c = server.connect();
    for i in 0..2 * workers {
        c.send(&json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": 50_000}));
    }
    for _ in 0..2 * workers {
        let r = c.recv().expect("warm-up reply");
        assert!(r.get("result").is_some(), "{r}");
    }
}

/// A client on its own connection sending small verified requests until stopped; every
/// reply is checked and anything but the right answer is recorded as a failure.
pub struct Steady {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    handle: JoinHandle<Vec<String>>,
}

impl Steady {
    pub fn start(addr: SocketAddr) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), ok.clone());
        let handle = std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut failures = Vec::new();
            let mut id = 0u64;
            while !flag.load(Ordering::Relaxed) && failures.len() < 10 {
                id += 1;
                let n = 1 + (id * 7919) % 5000;
                c.send(&json!({"id": id, "cmd": "compute", "kernel": "fib", "n": n}));
                c.send(&json!({"id": format!("p{id}"), "cmd": "ping"}));
                let mut pong = false;
                let mut result = false;
                for _ in 0..2 {
                    let Some(r) = c.recv() else {
                        failures.push(format!("connection closed after {id} rounds"));
                        return failures;
                    };
                    if r == json!({"id": format!("p{id}"), "ok": true, "pong": true}) {
                        pong = true;
                    } else if r == json!({"id": id, "result": Kernel::Fib.expected(n)}) {
                        result = true;
                    } else {
                        failures.push(format!("unexpected reply {r}"));
                    }
                }
                if pong && result {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                // Pacing, not synchronisation: leave the two cores to the attack and server.
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        });
        Steady { stop, ok, handle }
    }

    /// Starts one and waits until it is served, so that what it sees later is the attack's
    /// doing.
    pub fn serving(addr: SocketAddr, what: &str) -> Steady {
        let steady = Steady::start(addr);
        steady.assert_served(what);
        steady
    }

    /// Asserts that three more rounds succeed within 30 s: the server still serves this client.
    pub fn assert_served(&self, what: &str) {
        assert!(self.wait_progress(3, Duration::from_secs(30)), "{what}");
    }

    /// Stops the client and asserts that every reply it got was right.
    pub fn assert_clean(self, what: &str) {
        let failures = self.finish();
        assert!(
            failures.is_empty(),
            "{what}: steady client saw {failures:?}"
        );
    }

    /// Rounds answered correctly so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the client and returns what went wrong (empty when every reply was right).
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("steady client thread")
    }

    /// Waits until `more` further rounds succeed: proof the server kept serving this client.
    pub fn wait_progress(&self, more: u64, within: Duration) -> bool {
        let target = self.ok() + more;
        wait_for(within, || (self.ok() >= target).then_some(())).is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture workers.

/// An executable copy of `tests/fixtures/NAME`, so the test does not depend on the checkout
/// keeping the file's executable bit. Written to a fresh name and renamed into place, so a copy
/// being executed by another test is never rewritten under it.
pub fn fixture_exe(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let dst = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}.{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, &dst).expect("rename fixture");
    dst
}

/// `tests/fixtures/bad_worker.sh` with its ticket directory: each worker start takes one
/// ticket (a file named `NN-MODE`) and misbehaves as the mode says; with none left it acts as
/// `default` says (`ok` runs the real worker).
pub struct BadWorker {
    pub exe: PathBuf,
    pub tickets: tempfile::TempDir,
    pub log: PathBuf,
    pub default: &'static str,
}

impl BadWorker {
    pub fn new(tickets: &[&str], default: &'static str) -> BadWorker {
        let dir = tempfile::tempdir().expect("ticket dir");
        let log = dir.path().join("starts.log");
        let tickets_dir = dir.path().join("tickets");
        std::fs::create_dir(&tickets_dir).expect("tickets");
        for (i, mode) in tickets.iter().enumerate() {
            std::fs::write(tickets_dir.join(format!("{i:02}-{mode}")), b"").expect("ticket");
        }
        BadWorker {
            exe: fixture_exe("bad_worker.sh"),
            tickets: dir,
            log,
            default,
        }
    }

    /// Adds what the server needs to run this worker to `launch`.
    pub fn apply(&self, launch: Launch) -> Launch {
        let mut launch = launch
            .env("TC_TICKETS", self.tickets.path().join("tickets"))
            .env("TC_DEFAULT", self.default)
            .env("TC_REAL_WORKER", BIN)
            .env("TC_LOG", &self.log);
        launch.args.push("--worker-exe".into());
        launch.args.push(self.exe.to_string_lossy().into_owned());
        launch
    }

    /// One line per worker start: the mode it ran in.
    pub fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
