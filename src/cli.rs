//! The command line: subcommands and the `serve` flags, turned into validated configs.

use crate::backend::{BackendKind, PoolConfig};
use crate::kernel::Kernel;
use crate::server::{self, ServeConfig, ServerConfig};
use crate::units::parse_duration;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "threadcenter-bench",
    version,
    about = "Where does process parallelism beat thread parallelism for CPU-bound requests over TCP?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Serve the protocol on a TCP port, with CPU work on the chosen backend.
    Serve(ServeArgs),
    /// Drive load against any server that speaks the protocol and verify every reply.
    Load(crate::load::LoadArgs),
    /// Run the grid of backends × workers × connections × sizes × kernels.
    Sweep(crate::sweep::SweepArgs),
    /// Render the HTML report from a sweep's CSV.
    Report(crate::report::ReportArgs),
    /// Combine HdrHistogram interval logs from several load processes or hosts.
    Merge(crate::load::MergeArgs),
    /// The process backend's child (internal).
    #[command(hide = true)]
    Worker(crate::worker::WorkerArgs),
}

fn parse_kernel(s: &str) -> Result<Kernel, String> {
    Kernel::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kernel {s:?}; known: {}", names.join(", "))
    })
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
    #[arg(long, value_enum, default_value_t = BackendKind::Process)]
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
    /// A job running longer gets `timeout` (process backend: its worker is replaced).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Time in-flight work gets to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Process backend: the least number of jobs written ahead into each worker's pipe to hide
    /// its round trip (short jobs get more, up to ~100 µs of work; 1 turns writing ahead off).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub worker_queue: u64,
    /// Build these kernels' per-process state before listening (e.g. `table`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kernel)]
    pub preload: Vec<Kernel>,
    /// Process backend: run this program as the worker instead of this binary's `worker`
    /// subcommand (it is started as `PROGRAM worker`). For fault-injection tests.
    #[arg(long, hide = true)]
    pub worker_exe: Option<std::path::PathBuf>,
    /// Internal: run as one of prefork's single-threaded servers.
    #[arg(long, hide = true)]
    pub prefork_child: bool,
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

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_tracing();
    if matches!(cli.command, Commands::Serve(_) | Commands::Worker(_)) {
        quiet_panics();
    }
    match cli.command {
        Commands::Serve(args) => serve(args),
        Commands::Load(args) => crate::load::run_cli(args),
        Commands::Sweep(args) => crate::sweep::run_cli(args),
        Commands::Report(args) => crate::report::run_cli(args),
        Commands::Merge(args) => crate::load::merge_cli(args),
        Commands::Worker(args) => crate::worker::run(args).map(|()| ExitCode::SUCCESS),
    }
}

/// A panicking job is an expected event here (it becomes a `job_panicked` reply): report it
/// in one line instead of a backtrace per job.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = crate::backend::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!("threadcenter-bench[{}]: {msg}{at}", std::process::id());
    }));
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("THREADCENTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    server::serve_until_signalled(args.config()?, |addr| println!("listening on {addr}"))?;
    Ok(ExitCode::SUCCESS)
}
