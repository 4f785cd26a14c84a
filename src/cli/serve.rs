//! `threadcenter-bench serve`: the flags, turned into a [`ServeConfig`] and served until a signal.

use crate::backend::{BackendKind, PoolConfig, Transport};
use crate::kernel::Kernel;
use crate::server::{self, ServeConfig, ServerConfig};
use crate::units::parse_duration;
use anyhow::Context;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

fn parse_kernel(s: &str) -> Result<Kernel, String> {
    Kernel::parse(s)
        .ok_or_else(|| {
            format!(
                "unknown kernel {s:?}; known: {}",
                Kernel::builtin_names().join(", ")
            )
        })
        .and_then(Kernel::ensure_available)
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind. Only loopback unless you give another address explicitly.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// Where the CPU work runs.
    #[arg(long, default_value = BackendKind::Process.name(), value_parser = super::one_of(BackendKind::ALL, BackendKind::name, |_| None))]
    pub backend: BackendKind,
    /// Compute workers (processes or threads); default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,
    /// Threads for socket I/O; default: cores ÷ 4, between 1 and 4.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub io_threads: Option<u32>,
    /// Accept the `crash` fault-injection kernel.
    #[arg(long)]
    pub allow_crash: bool,
    /// Largest request frame, bytes.
    #[arg(long, default_value_t = crate::protocol::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Most simultaneous connections (clamped below the open-file limit).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// A started frame must be complete within this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub frame_deadline: Duration,
    /// Close a connection after this long without a byte (and nothing in flight).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Unanswered requests per connection; at the cap the server stops reading that socket.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_in_flight: u64,
    /// Jobs waiting for a worker; beyond it requests get `overloaded` at once. The process
    /// backend's write-ahead (`--worker-queue`, up to ~100 µs of work per worker) is on top.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue: u64,
    /// A job running longer gets `timeout` (process backends: its worker is replaced; prefork:
    /// when the job returns, and a child whose job runs a drain time longer exits and is
    /// replaced).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Time in-flight work gets to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Process backend: the least number of jobs written ahead into each worker's pipe to hide
    /// its round trip (short jobs get more, up to ~100 µs of work; 1 turns writing ahead off).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub worker_queue: u64,
    /// `--backend shm`: µs an idle worker polls its job ring before it sleeps (0: sleep at
    /// once), and the dispatcher its reply ring and the queue after a tiny job. Spinning takes
    /// CPU from the other workers and the I/O thread: by default 20 where the server has more
    /// cores than workers + 1, else 0.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub spin_us: Option<u64>,
    /// Build these kernels' per-process state before listening (e.g. `table`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kernel)]
    pub preload: Vec<Kernel>,
    #[command(flatten)]
    pub user: super::UserKernelArgs,
    /// Process backend: run this program as the worker instead of this binary's `worker`
    /// subcommand (it is started as `PROGRAM worker`). For fault-injection tests.
    #[arg(long, hide = true)]
    pub worker_exe: Option<std::path::PathBuf>,
    /// Internal: run as one of prefork's single-threaded servers.
    #[arg(long, hide = true)]
    pub prefork_child: bool,
    /// Internal: exit when the process that started this server dies (the sweep's cell
    /// servers), so that a sweep killed mid-cell leaves no server behind.
    #[arg(long, hide = true)]
    pub die_with_parent: bool,
}

impl ServeArgs {
    /// The plain config these flags ask for: the host resolved, defaults filled in.
    pub fn config(&self) -> anyhow::Result<ServeConfig> {
        let addr: SocketAddr = format!("{}:{}", self.host, self.port)
            .parse()
            .or_else(|_| {
                use std::net::ToSocketAddrs;
                (self.host.as_str(), self.port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))
            })
            .with_context(|| format!("cannot resolve --host {}", self.host))?;
        let cores = crate::machine::cores();
        Ok(ServeConfig {
            addr,
            backend: self.backend,
            pool: PoolConfig {
                workers: self.workers.map_or(cores, |w| w as usize),
                queue: self.queue as usize,
                job_timeout: self.job_timeout,
                worker_queue: self.worker_queue as usize,
                preload: self.preload.clone(),
                worker_exe: self.worker_exe.clone(),
                transport: match self.backend {
                    BackendKind::Shm => Transport::Shm {
                        spin_us: self.spin_us.unwrap_or_else(|| {
                            crate::backend::shm::auto_spin_us(
                                cores,
                                self.workers.map_or(cores, |w| w as usize),
                            )
                        }),
                    },
                    _ => Transport::Pipe,
                },
            },
            server: ServerConfig {
                max_frame: self.max_frame,
                max_connections: self.max_connections,
                frame_deadline: self.frame_deadline,
                idle_timeout: self.idle_timeout,
                max_in_flight: self.max_in_flight as usize,
                drain: self.drain,
                allow_crash: self.allow_crash,
            },
            io_threads: self
                .io_threads
                .map_or_else(|| (cores / 4).clamp(1, 4), |n| n as usize),
            prefork_child: self.prefork_child,
        })
    }
}

/// Serves until SIGINT/SIGTERM, saying `listening on ADDR` once connections are accepted.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.die_with_parent {
        crate::worker::die_with_parent()?;
    }
    // Before the pool starts: its workers and prefork children load the same kernels.
    args.user.load()?;
    server::serve_until_signalled(args.config()?, |addr| println!("listening on {addr}"))?;
    Ok(ExitCode::SUCCESS)
}
