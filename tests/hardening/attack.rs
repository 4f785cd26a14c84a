//! Async hostile connections, so one test thread can hold a thousand of them at once.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A runtime for the attacking side: two threads, timers and I/O.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("attack runtime")
}

/// A frame: 4-byte big-endian length, then the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// How a hostile connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed it (FIN).
    Eof,
    /// The server reset it (closing with unread input does that).
    Reset,
    /// Still open when we stopped waiting.
    StillOpen,
}

/// What a hostile connection saw: the replies the server sent, how it ended, and when.
#[derive(Debug, Clone)]
pub struct Seen {
    pub replies: Vec<Value>,
    pub end: End,
    /// From the `since` the caller gave until the close.
    pub after: Duration,
}

impl Seen {
    /// True when every reply is an error with this code (and there may be none).
    pub fn only_errors(&self, code: &str) -> bool {
        self.replies.iter().all(|r| r["error"] == code)
    }
}

/// Reads until the server closes the connection or `within` passes, and parses the frames
/// that arrived. `since` is the instant `after` is measured from.
pub async fn read_until_close(stream: &mut TcpStream, since: Instant, within: Duration) -> Seen {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break End::StillOpen,
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break End::Reset,
        }
    };
    Seen {
        replies: parse_frames(&bytes),
        end,
        after: since.elapsed(),
    }
}

/// The JSON replies in a byte stream of frames (a trailing partial frame is ignored).
pub fn parse_frames(mut bytes: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(payload) = bytes.get(4..4 + len) else {
            break;
        };
        out.push(serde_json::from_slice(payload).unwrap_or(Value::Null));
        bytes = &bytes[4 + len..];
    }
    out
}

/// Connects, writes `bytes` (a write error means the server already closed: fine), and
/// reports what came back. `after` counts from the start of the write.
pub async fn send_and_watch(addr: SocketAddr, bytes: Vec<u8>, within: Duration) -> Seen {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let since = Instant::now();
    let _ = s.write_all(&bytes).await;
    read_until_close(&mut s, since, within).await
}

/// Opens connections that send nothing, at most `at_once` of them connecting or waiting at a
/// time (more would overflow the listen backlog, and the kernel, not the server, would then
/// hold them in limbo), and reports what the server did with each within `within`, timed from
/// just before its connect. The sockets are returned still open, so a test can hold them.
pub async fn connect_and_watch(
    addr: SocketAddr,
    count: usize,
    at_once: usize,
    within: Duration,
) -> Vec<(TcpStream, Seen)> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(at_once.max(1)));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _turn = gate.acquire_owned().await.expect("gate");
                let since = Instant::now();
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let seen = read_until_close(&mut s, since, within).await;
                (s, seen)
            })
        })
        .collect();
    join_all(tasks, "watch task").await
}

/// Each task's output, in order; panics naming `what` if one of them panicked.
pub async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>, what: &str) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect(what));
    }
    out
}
