//! The socket side: accept connections, read pipelined requests, hand compute jobs to the
//! backend, write replies in whatever order they finish. The same code serves every backend.
//!
//! Each connection is one task running a reader and a writer side by side. The reader stops
//! taking frames from the socket while the connection has `max_in_flight` requests
//! unanswered (backpressure instead of unbounded buffering). Every request produces exactly one
//! [`Outgoing`] message; the writer batches whatever replies are ready into one write.
//!
//! [`serve`] is the `serve` subcommand as one call: where the backend kind decides how the
//! server starts (a pool and a listener, or [`prefork`]'s supervisor).

pub mod child;
pub mod prefork;
mod serve;

pub use serve::{serve, serve_until_signalled, ServeConfig, ServerConfig};

use crate::backend::{Backend, Job};
use crate::connection::{put_frame_with, FrameError, FrameReader, ReadLimits};
use crate::kernel::{user, Kernel};
use crate::protocol::{parse_request, Command, ErrorCode, ErrorReply, Id, Reply, Timings};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The hasher for the per-connection maps touched on every request. SipHash cost 6 % of the
/// I/O thread under a ping flood; foldhash is several times cheaper and still seeded per
/// process, and each map is capped at `--max-in-flight` entries anyway.
type FastHash = foldhash::fast::RandomState;

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight jobs
/// finish and their replies go out (up to `config.drain`), and stops the backend.
///
/// Returns an error only when the backend can no longer serve (e.g. workers cannot start).
pub async fn run(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let tracker = TaskTracker::new();
    let fatal = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            why = backend.fatal() => break Some(why),
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    // Replies are small and latency is the measurement: no Nagle delay.
                    let _ = socket.set_nodelay(true);
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let handler =
                                Handler::new(backend.clone(), config.clone(), shutdown.clone());
                            tracker.spawn(handler.serve(socket, slot));
                        }
                        Err(_) => {
                            tracker.spawn(refuse(socket, config.max_connections));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    };
    drop(listener);
    tracker.close();
    if fatal.is_some() {
        shutdown.cancel();
    }
    let drain = config.drain;
    let stop = async {
        tokio::join!(tracker.wait(), backend.shutdown(drain));
    };
    // The backend answers leftovers with `shutting_down` at the drain deadline; the extra
    // second lets those replies reach their sockets.
    if tokio::time::timeout(drain + Duration::from_secs(1), stop)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
    match fatal {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}

/// Tells a client over the connection limit why it is turned away, then closes.
async fn refuse(mut socket: TcpStream, max: usize) {
    let mut out = Vec::new();
    put_frame_with(&mut out, |o| {
        Reply::Error(ErrorReply::new(
            None,
            ErrorCode::TooManyConnections,
            format!("the server is at its limit of {max} connections; try again later"),
        ))
        .encode_into(o)
    });
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket.write_all(&out).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// A reply on its way to the writer, with what the writer needs to finish it.
struct Outgoing {
    reply: Reply,
    /// When the request frame was read, if the client asked for timings.
    read_at: Option<Instant>,
    /// An in-flight id this reply releases for reuse.
    releases: Option<Id>,
    /// Held until the reply is written: the in-flight cap counts unanswered requests.
    _permit: OwnedSemaphorePermit,
}

/// What answering a job handed to the backend takes: its in-flight permit and a sender to
/// the writer. Taken exactly once, by the job's completion or, at the drain deadline, by the
/// server itself. Keeping the sender here rather than in the completion lets the server end a
/// connection whose job is stuck on a thread that cannot be stopped.
struct Owed {
    permit: OwnedSemaphorePermit,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// A job the backend has not answered yet.
struct Outstanding {
    id: Id,
    read_at: Option<Instant>,
    owed: Mutex<Option<Owed>>,
}

/// A connection's outstanding jobs, by sequence number.
type Ledger = Arc<Mutex<HashMap<u64, Arc<Outstanding>, FastHash>>>;

/// Serves one client connection: reads its requests, hands them on, and owes each one reply.
struct Handler {
    backend: Arc<dyn Backend>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    /// Ids of requests not yet answered, for `duplicate_id`.
    in_flight_ids: Arc<Mutex<HashSet<Id, FastHash>>>,
    /// Jobs handed to the backend and not yet answered, so that the drain deadline can
    /// answer them.
    ledger: Ledger,
    next_seq: AtomicU64,
    /// Set once the peer is known to be gone: its jobs that have not started are dropped.
    gone: Arc<AtomicBool>,
}

impl Handler {
    fn new(
        backend: Arc<dyn Backend>,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> Self {
        Handler {
            backend,
            config,
            shutdown,
            in_flight_ids: Arc::new(Mutex::new(HashSet::default())),
            ledger: Arc::new(Mutex::new(HashMap::default())),
            next_seq: AtomicU64::new(0),
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn serve(self, socket: TcpStream, _slot: OwnedSemaphorePermit) {
        let (rd, wr) = socket.into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = write_replies(
            wr,
            rx,
            self.in_flight_ids.clone(),
            self.config.idle_timeout,
            self.gone.clone(),
        );
        let reader = self.read_requests(FrameReader::new(rd, self.config.max_frame), tx);
        let work = async { tokio::join!(reader, writer) };
        tokio::pin!(work);
        let drain_over = async {
            self.shutdown.cancelled().await;
            tokio::time::sleep(self.config.drain).await;
        };
        tokio::select! {
            _ = &mut work => {}
            _ = drain_over => {
                // Jobs still out when the drain time is over get `shutting_down` now, so every
                // accepted request has its one reply before the server exits. (A thread
                // backend cannot stop a running job; its late result finds nothing to take.)
                self.abandon_outstanding();
                work.await;
            }
        }
    }

    fn abandon_outstanding(&self) {
        let left: Vec<Arc<Outstanding>> = self.ledger.lock().drain().map(|(_, o)| o).collect();
        for o in left {
            if let Some(owed) = o.owed.lock().take() {
                let reply = Reply::Error(ErrorReply::new(
                    Some(o.id.clone()),
                    ErrorCode::ShuttingDown,
                    "drain time exceeded before the job finished",
                ));
                send(&owed.tx, reply, o.read_at, Some(o.id.clone()), owed.permit);
            }
        }
    }

    /// Reads and dispatches requests until the peer closes, a framing error, or shutdown.
    /// Returning drops this side's sender; the writer ends once every reply is out.
    async fn read_requests(
        &self,
        mut frames: FrameReader<tokio::net::tcp::OwnedReadHalf>,
        tx: mpsc::UnboundedSender<Outgoing>,
    ) {
        let cap = self.config.max_in_flight;
        let in_flight = Arc::new(Semaphore::new(cap));
        loop {
            // Requests pipelined into one read are dispatched back to back: while a permit is
            // free and a whole frame is buffered there is nothing to wait for, so the waits
            // below (and their futures) are skipped. Shutdown and a gone writer are still
            // seen before each request.
            if self.shutdown.is_cancelled() || tx.is_closed() {
                return;
            }
            let permit = match in_flight.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => tokio::select! {
                    p = in_flight.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                    _ = self.shutdown.cancelled() => return,
                    // The writer gave up on the peer: reading more would only make work for
                    // no one.
                    _ = tx.closed() => return,
                },
            };
            let frame = match frames.buffered_frame() {
                Ok(None) => {
                    // Idle means nothing arriving and nothing owed: a client waiting on a
                    // slow job is not idle.
                    let idle = (in_flight.available_permits() + 1 == cap)
                        .then_some(self.config.idle_timeout);
                    let limits = ReadLimits {
                        idle,
                        frame: Some(self.config.frame_deadline),
                    };
                    tokio::select! {
                        f = frames.read_frame(limits) => f,
                        _ = self.shutdown.cancelled() => return,
                        _ = tx.closed() => return,
                    }
                }
                buffered => buffered,
            };
            match frame {
                Ok(Some(payload)) => self.dispatch(&payload, frames.read_at(), permit, &tx),
                Ok(None) => return,
                Err(e @ (FrameError::TooLarge { .. } | FrameError::Deadline(_))) => {
                    let reply = Reply::Error(ErrorReply::new(
                        None,
                        ErrorCode::FrameTooLarge,
                        format!("{e}; closing the connection"),
                    ));
                    send(&tx, reply, None, None, permit);
                    return;
                }
                Err(FrameError::Idle(_)) => return,
                // The peer vanished (reset, or closed mid-frame): nobody will read replies, so
                // queued jobs need not run. A clean close between frames may be a half-close
                // by a client still waiting for its replies, and is not taken as gone.
                Err(FrameError::Truncated(_) | FrameError::Io(_)) => {
                    self.gone.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// Answers or hands on one request, read in full at `read_at`.
    fn dispatch(
        &self,
        payload: &[u8],
        read_at: Instant,
        permit: OwnedSemaphorePermit,
        tx: &mpsc::UnboundedSender<Outgoing>,
    ) {
        let req = match parse_request(payload) {
            Ok(r) => r,
            Err(e) => return send(tx, Reply::Error(e), None, None, permit),
        };
        let read_at = req.timing.then_some(read_at);
        if !self.in_flight_ids.lock().insert(req.id.clone()) {
            let reply = Reply::Error(ErrorReply::new(
                Some(req.id.clone()),
                ErrorCode::DuplicateId,
                format!(
                    "a request with id {} is already in flight on this connection",
                    req.id
                ),
            ));
            return send(tx, reply, read_at, None, permit);
        }
        let id = req.id;
        let refuse = |code: ErrorCode, detail: String, permit| {
            let reply = Reply::Error(ErrorReply::new(Some(id.clone()), code, detail));
            send(tx, reply, read_at, Some(id.clone()), permit)
        };
        let (kernel, n) = match req.cmd {
            Command::Ping => {
                let t = read_at.map(|_| Timings::default());
                let reply = Reply::Pong { id: id.clone(), t };
                return send(tx, reply, read_at, Some(id.clone()), permit);
            }
            Command::Compute { kernel, n } => (kernel, n),
        };
        let kernel = match Kernel::parse(&kernel) {
            Some(Kernel::Crash) if !self.config.allow_crash => {
                return refuse(
                    ErrorCode::UnknownKernel,
                    "kernel \"crash\" is disabled; start the server with --allow-crash".into(),
                    permit,
                )
            }
            Some(k) if k.is_runnable() => match k.why_unavailable() {
                Some(why) => return refuse(ErrorCode::UnknownKernel, why, permit),
                None => k,
            },
            _ if user::is_user_name(&kernel) => {
                let detail = user::not_loaded_detail(&kernel);
                return refuse(ErrorCode::UnknownKernel, detail, permit);
            }
            _ => {
                let mut names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
                names.extend(user::loaded_names());
                return refuse(
                    ErrorCode::UnknownKernel,
                    format!("unknown kernel {kernel:?}; known: {}", names.join(", ")),
                    permit,
                );
            }
        };
        if n > kernel.max_n() {
            return refuse(
                ErrorCode::NOutOfRange,
                format!(
                    "n = {n} is over the limit of {} for {}",
                    kernel.max_n(),
                    kernel.name()
                ),
                permit,
            );
        }
        let job = Job {
            kernel,
            n,
            submitted: Instant::now(),
            abandoned: Some(self.gone.clone()),
        };
        // The permit and reply sender travel with the job, through the ledger; if the backend
        // refuses the job, they come back here.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Outstanding {
            id: id.clone(),
            read_at,
            owed: Mutex::new(Some(Owed {
                permit,
                tx: tx.clone(),
            })),
        });
        self.ledger.lock().insert(seq, entry.clone());
        let ledger = self.ledger.clone();
        let mine = entry.clone();
        let submitted = self.backend.submit(
            job,
            Box::new(move |outcome| {
                ledger.lock().remove(&seq);
                let Some(owed) = mine.owed.lock().take() else {
                    return;
                };
                let reply = match outcome {
                    Ok(d) => Reply::Result {
                        id: mine.id.clone(),
                        result: d.result,
                        t: read_at.map(|_| Timings {
                            queue_us: d.queue_us,
                            compute_us: d.compute_us,
                            server_us: 0.0,
                        }),
                    },
                    Err(f) => {
                        Reply::Error(ErrorReply::new(Some(mine.id.clone()), f.code, f.detail))
                    }
                };
                send(&owed.tx, reply, read_at, Some(mine.id.clone()), owed.permit);
            }),
        );
        if let Err(f) = submitted {
            self.ledger.lock().remove(&seq);
            if let Some(owed) = entry.owed.lock().take() {
                refuse(f.code, f.detail, owed.permit);
            }
        }
    }
}

fn send(
    tx: &mpsc::UnboundedSender<Outgoing>,
    reply: Reply,
    read_at: Option<Instant>,
    releases: Option<Id>,
    permit: OwnedSemaphorePermit,
) {
    // Fails only when the writer is gone (peer vanished): the reply has nowhere to go.
    let _ = tx.send(Outgoing {
        reply,
        read_at,
        releases,
        _permit: permit,
    });
}

/// Most bytes gathered into one write when many replies are ready at once.
const WRITE_BATCH: usize = 64 * 1024;

/// Writes replies until every sender is gone. A peer that does not take a batch of replies
/// within `stall` (it stopped reading) is given up on: otherwise it would hold its connection
/// slot, and the replies queued for it, forever.
async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    ids: Arc<Mutex<HashSet<Id, FastHash>>>,
    stall: Duration,
    gone: Arc<AtomicBool>,
) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(mut out) = next.take() {
            if let Some(at) = out.read_at {
                let server_us = at.elapsed().as_secs_f64() * 1e6;
                match &mut out.reply {
                    Reply::Result { t: Some(t), .. } | Reply::Pong { t: Some(t), .. } => {
                        t.server_us = server_us
                    }
                    _ => {}
                }
            }
            put_frame_with(&mut buf, |o| out.reply.encode_into(o));
            if let Some(id) = &out.releases {
                ids.lock().remove(id);
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !matches!(
            tokio::time::timeout(stall, wr.write_all(&buf)).await,
            Ok(Ok(()))
        ) {
            // The peer is gone or not reading. Its jobs not yet started are dropped; dropping
            // the receiver makes the running ones' sends fail quietly (their results are
            // discarded) and tells the reader to stop.
            gone.store(true, Ordering::Release);
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}
