//! The load driver over real sockets: against a stand-in of the original Python server, fake
//! servers that misbehave on purpose, and the real server with each backend. The helpers
//! below start those servers and run the `load` binary; each file holds one topic.

#[path = "load/binary.rs"]
mod binary;
#[path = "load/faulty.rs"]
mod faulty;
#[path = "load/multihost.rs"]
mod multihost;
#[path = "load/probe.rs"]
mod probe;
#[path = "load/servers.rs"]
mod servers;

use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use threadcenter::load::{LoadReport, LoadSpec};
use threadcenter::server::child::{ServerChild, ServerCommand, StderrTo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter-bench");

/// How long a test server may take to say `listening on ADDR`.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts `cmd` in a process group of its own, so that dropping it kills the Python server's
/// pool workers and the process backend's workers with it.
fn start(cmd: ServerCommand) -> (ServerChild, SocketAddr) {
    let server = cmd
        .own_group()
        .stderr(StderrTo::Inherit)
        .start(START_LIMIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let addr = server.addr();
    (server, addr)
}

/// The faithful stand-in of the original Python server, with `workers` worker processes.
fn python_server_with(workers: u32) -> (ServerChild, SocketAddr) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/original_server.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg("0").arg(workers.to_string());
    start(ServerCommand::new(cmd).named("Python server"))
}

fn python_server() -> (ServerChild, SocketAddr) {
    python_server_with(2)
}

fn real_server(backend: &str, workers: u32) -> (ServerChild, SocketAddr) {
    start(ServerCommand::serve(BIN).args([
        "--port",
        "0",
        "--backend",
        backend,
        "--workers",
        &workers.to_string(),
    ]))
}

/// Runs the `load` binary; returns its exit success, stdout and stderr.
async fn load_bin(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("load")
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `load` binary against the server at `addr` (its `--port`, then `args`).
async fn load_bin_at(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let port = addr.port().to_string();
    load_bin(&[&["--port", port.as_str()][..], args].concat()).await
}

/// A fake server on a free port: every accepted connection is handed to `serve`.
async fn fake<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// Reads and discards until the peer closes: a server that holds the connection open and
/// never answers.
async fn drain(s: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn read_json(s: &mut TcpStream) -> Option<Value> {
    let len = s.read_u32().await.ok()?;
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await.ok()?;
    serde_json::from_slice(&buf).ok()
}

async fn write_json(s: &mut TcpStream, v: &Value) {
    let body = v.to_string();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    let _ = s.write_all(&frame).await;
}

fn spec(addr: SocketAddr) -> LoadSpec {
    LoadSpec {
        addr,
        ..LoadSpec::default()
    }
}

fn errors(r: &LoadReport, kind: &str) -> u64 {
    r.errors.get(kind).copied().unwrap_or(0)
}
