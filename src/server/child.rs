//! A server child: `threadcenter-bench serve …` (or any program whose first line on stdout is
//! `listening on ADDR`) run as a child process, known by its address once it says it listens,
//! and stopped with SIGTERM and a deadline. The sweep runs every cell on one, the prefork
//! supervisor runs its workers as them, and the tests and benches start their servers with it.
//!
//! From the start, the child's stdout and stderr are read on threads of their own, so a chatty
//! child never blocks on a full pipe; the tail of its stderr is kept for error messages. The
//! logic is synchronous, for tests on plain threads; the `_async` variants run its waits on
//! tokio's blocking pool. Either way the child is spawned on the calling thread: a prefork
//! child dies with the thread that started it (`PR_SET_PDEATHSIG`), so that must not be a pool
//! thread that may retire while the child runs.

mod affinity;
mod pipes;
#[cfg(test)]
mod tests;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use pipes::{drain, StderrLog, Tail, SETTLE};
use std::ffi::OsStr;
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a wait for the child's exit looks again.
const POLL: Duration = Duration::from_millis(10);

/// Where the child's stderr goes.
#[derive(Debug, Clone)]
pub enum StderrTo {
    /// Read and dropped but for its tail, which error messages quote.
    Capture,
    /// This process's own stderr (error messages cannot quote it).
    Inherit,
    /// A file, created afresh; error messages quote its end.
    File(PathBuf),
}

/// What to start: the program, its arguments and environment, and how to treat it.
pub struct ServerCommand {
    cmd: Command,
    what: String,
    stderr: StderrTo,
    own_group: bool,
    /// Pin the child (and so its whole tree) to these CPUs; `None`: wherever this process may run.
    cpus: Option<Vec<usize>>,
    /// The child's stdin; `None`: /dev/null.
    stdin: Option<std::os::fd::OwnedFd>,
}

impl ServerCommand {
    /// `exe serve`, arguments to follow.
    pub fn serve(exe: impl AsRef<OsStr>) -> ServerCommand {
        let mut cmd = Command::new(exe);
        cmd.arg("serve");
        ServerCommand::new(cmd)
    }

    /// Any program that prints `listening on ADDR` as its first line.
    pub fn new(cmd: Command) -> ServerCommand {
        ServerCommand {
            cmd,
            what: "server".to_string(),
            stderr: StderrTo::Capture,
            own_group: false,
            cpus: None,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ServerCommand {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> ServerCommand {
        self.cmd.args(args);
        self
    }

    /// What error messages call the child ("server" unless named).
    pub fn named(mut self, what: impl Into<String>) -> ServerCommand {
        self.what = what.into();
        self
    }

    pub fn stderr(mut self, to: StderrTo) -> ServerCommand {
        self.stderr = to;
        self
    }

    /// Starts the child in a process group of its own and signals the whole group: for a
    /// server whose own children (a Python pool) would not otherwise hear the signal.
    pub fn own_group(mut self) -> ServerCommand {
        self.own_group = true;
        self
    }

    /// Runs the child, its threads and its own children only on `cpus`: the sweep keeps the
    /// server off the load driver's cores.
    pub fn cpus(mut self, cpus: &[usize]) -> ServerCommand {
        self.cpus = Some(cpus.to_vec());
        self
    }

    /// Gives the child `fd` as its stdin (prefork's link to its supervisor).
    pub fn stdin(mut self, fd: std::os::fd::OwnedFd) -> ServerCommand {
        self.stdin = Some(fd);
        self
    }

    /// The command itself, for what the builder does not cover (environment, `pre_exec`).
    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Starts the child and waits up to `limit` for its `listening on ADDR`.
    pub fn start(self, limit: Duration) -> anyhow::Result<ServerChild> {
        self.spawn()?.ready(limit)
    }

    /// [`ServerCommand::start`] for async callers: spawned here, waited for on the blocking
    /// pool.
    pub async fn start_async(self, limit: Duration) -> anyhow::Result<ServerChild> {
        let starting = self.spawn()?;
        blocking(move || starting.ready(limit)).await
    }

    fn spawn(mut self) -> anyhow::Result<Starting> {
        let stderr = match &self.stderr {
            StderrTo::Capture => Stdio::piped(),
            StderrTo::Inherit => Stdio::inherit(),
            StderrTo::File(path) => std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?
                .into(),
        };
        let stdin = self.stdin.take().map_or_else(Stdio::null, Stdio::from);
        self.cmd.stdin(stdin).stdout(Stdio::piped()).stderr(stderr);
        if self.own_group {
            self.cmd.process_group(0);
        }
        if let Some(cpus) = &self.cpus {
            let set = crate::machine::cpu_set(cpus)
                .with_context(|| format!("cannot pin the {} to CPUs {cpus:?}", self.what))?;
            affinity::pin_child(&mut self.cmd, set);
        }
        let child = self.cmd.spawn().with_context(|| {
            format!(
                "cannot start the {} ({})",
                self.what,
                self.cmd.get_program().to_string_lossy()
            )
        })?;
        let proc = Proc {
            pid: child.id() as i32,
            group: self.own_group,
            reaped: false,
            child,
        };
        let (tx, first_line) = crossbeam_channel::bounded(1);
        let mut starting = Starting {
            stderr: StderrLog::Inherited,
            first_line,
            what: self.what,
            proc,
        };
        let stdout = starting
            .proc
            .child
            .stdout
            .take()
            .context("stdout is piped")?;
        drain("stdout", stdout, move |reader| {
            let mut line = Vec::new();
            let said = match reader.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 => Some(String::from_utf8_lossy(&line).trim_end().to_string()),
                _ => None,
            };
            let _ = tx.send(said);
        })?;
        starting.stderr = match self.stderr {
            StderrTo::Inherit => StderrLog::Inherited,
            StderrTo::File(path) => StderrLog::File(path),
            StderrTo::Capture => {
                let tail = Arc::new(Tail::default());
                let err = starting
                    .proc
                    .child
                    .stderr
                    .take()
                    .context("stderr is piped")?;
                let sink = tail.clone();
                drain("stderr", err, move |reader| sink.collect(reader))?;
                StderrLog::Captured(tail)
            }
        };
        Ok(starting)
    }
}

/// A child that has not said yet that it listens.
struct Starting {
    proc: Proc,
    first_line: crossbeam_channel::Receiver<Option<String>>,
    stderr: StderrLog,
    what: String,
}

impl Starting {
    /// Waits for the first line; anything but `listening on ADDR` within `limit` kills the
    /// child and is an error quoting its stderr.
    fn ready(mut self, limit: Duration) -> anyhow::Result<ServerChild> {
        let what = &self.what;
        let deadline = Instant::now() + limit;
        let said = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.first_line.recv_timeout(left.min(POLL * 5)) {
                Ok(said) => break said,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break None,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            // A child that exited may leave its stdout open in a grandchild: look directly.
            if let Ok(Some(_)) = self.proc.try_wait() {
                break self.first_line.try_recv().ok().flatten();
            }
            if left.is_zero() {
                self.proc.kill();
                bail!(
                    "{what} not listening after {limit:?}; {}",
                    self.stderr.quote()
                );
            }
        };
        let addr = said.as_deref().and_then(|line| {
            line.strip_prefix("listening on ")
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        });
        match (addr, said) {
            (Some(addr), _) if self.proc.reaped => bail!(
                "{what} exited right after listening on {addr}; {}",
                self.stderr.quote()
            ),
            (Some(addr), _) => Ok(ServerChild {
                proc: self.proc,
                addr,
                stderr: self.stderr,
                what: self.what,
            }),
            (None, Some(line)) => {
                self.proc.kill();
                bail!(
                    "{what} said {line:?} instead of `listening on ADDR`; {}",
                    self.stderr.quote()
                )
            }
            (None, None) => {
                // Stdout closed: the child is exiting, if it has not already.
                let status = match self.proc.wait(Duration::from_secs(5)) {
                    Ok(Some(s)) => s.to_string(),
                    _ => {
                        self.proc.kill();
                        "closed its stdout; killed".to_string()
                    }
                };
                bail!(
                    "{what} exited before listening ({status}); {}",
                    self.stderr.quote()
                )
            }
        }
    }
}

/// A running child that has said where it listens. Killed (SIGKILL, its group too if it has
/// one) when dropped unless it has already exited and been waited for.
pub struct ServerChild {
    proc: Proc,
    addr: SocketAddr,
    stderr: StderrLog,
    what: String,
}

impl ServerChild {
    pub fn pid(&self) -> i32 {
        self.proc.pid
    }

    /// Where it listens, from its `listening on ADDR`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `sig` (to its group when it has one). Refused once it has been waited for: the
    /// pid may belong to another process by then.
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        if self.proc.reaped {
            return Err(nix::errno::Errno::ESRCH);
        }
        self.proc.send(sig)
    }

    /// Its exit status if it has exited (and waits for it, so it leaves no zombie).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.proc.try_wait()
    }

    /// Waits up to `within` for it to exit by itself; `None` if it is still running.
    pub fn wait(&mut self, within: Duration) -> std::io::Result<Option<ExitStatus>> {
        self.proc.wait(within)
    }

    /// The end of its stderr so far (`None` when it goes to this process's own stderr).
    pub fn stderr_tail(&self) -> Option<String> {
        self.stderr.tail(Duration::ZERO)
    }

    /// SIGTERM, then [`ServerChild::reap`].
    pub fn stop(self, within: Duration) -> Stopped {
        let _ = self.signal(Signal::SIGTERM);
        self.reap(within)
    }

    /// Waits up to `within` for it to exit, and kills it past that.
    pub fn reap(mut self, within: Duration) -> Stopped {
        let exit = match self.proc.wait(within) {
            Ok(Some(status)) => Exit::Exited(status),
            Ok(None) => {
                self.proc.kill();
                Exit::Killed { after: within }
            }
            Err(e) => {
                self.proc.kill();
                Exit::Lost(e.to_string())
            }
        };
        Stopped {
            exit,
            what: std::mem::take(&mut self.what),
            stderr: std::mem::replace(&mut self.stderr, StderrLog::Inherited),
        }
    }

    /// [`ServerChild::stop`] for async callers, waiting on the blocking pool.
    pub async fn stop_async(self, within: Duration) -> Stopped {
        blocking(move || self.stop(within)).await
    }

    /// [`ServerChild::reap`] for async callers, waiting on the blocking pool.
    pub async fn reap_async(self, within: Duration) -> Stopped {
        blocking(move || self.reap(within)).await
    }
}

/// How a stopped child ended.
#[derive(Debug)]
pub enum Exit {
    /// It exited by itself with this status.
    Exited(ExitStatus),
    /// It was still running `after` the stop began, so it was killed.
    Killed { after: Duration },
    /// Waiting for it failed, so it was killed; how it ended is unknown.
    Lost(String),
}

/// A child that has been stopped: how it ended and, for an error message, its stderr.
pub struct Stopped {
    pub exit: Exit,
    what: String,
    stderr: StderrLog,
}

impl Stopped {
    /// The exit status, if it exited by itself.
    pub fn status(&self) -> Option<ExitStatus> {
        match self.exit {
            Exit::Exited(s) => Some(s),
            _ => None,
        }
    }

    /// Ok only for a clean exit with status 0; otherwise why not, with the last line of its
    /// stderr, which holds the reason a server failed.
    pub fn clean(&self) -> Result<(), String> {
        let what = &self.what;
        match &self.exit {
            Exit::Exited(s) if s.success() => Ok(()),
            Exit::Exited(s) => {
                let tail = self.stderr.tail(SETTLE).unwrap_or_default();
                let last = tail.trim().lines().last().unwrap_or("");
                Err(format!("{what} exited uncleanly ({s}): {last}"))
            }
            Exit::Killed { after } => Err(format!("{what} still running {after:?} after SIGTERM")),
            Exit::Lost(e) => Err(format!("cannot wait for the {what}: {e}")),
        }
    }
}

/// The child process itself: signals, waits, and the kill on drop.
struct Proc {
    child: Child,
    pid: i32,
    group: bool,
    /// Waited for: its pid is no longer ours to signal.
    reaped: bool,
}

impl Proc {
    fn send(&self, sig: Signal) -> nix::Result<()> {
        let pid = Pid::from_raw(self.pid);
        if self.group {
            killpg(pid, sig)
        } else {
            kill(pid, sig)
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    fn wait(&mut self, within: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL and wait. A group is killed even after its leader has exited: the leader's own
    /// children may outlive it.
    fn kill(&mut self) {
        if !self.reaped || self.group {
            let _ = self.send(Signal::SIGKILL);
        }
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a wait on tokio's blocking pool, passing a panic on as the caller's.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
