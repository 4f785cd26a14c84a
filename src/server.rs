//! The socket side: accept connections, read pipelined requests, hand compute jobs to the
//! backend, write replies in whatever order they finish. The same code serves every backend.
//!
//! Each connection is one task running a reader and a writer side by side. The reader stops
//! taking frames from the socket while the connection has `max_in_flight` requests
//! unanswered (backpressure instead of unbounded buffering). Every request produces exactly one
//! reply, encoded by whoever answers it straight into the connection's [`Outbox`]; the writer
//! takes whatever replies are there in one write.
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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
    let stopping = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        async move {
            shutdown.cancelled().await;
            stopping.store(true, Ordering::Release);
        }
    });
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
                            let handler = Handler::new(
                                backend.clone(),
                                config.clone(),
                                shutdown.clone(),
                                stopping.clone(),
                            );
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

/// A connection's replies on their way out: every reply, whoever produces it (the reader for a
/// ping or a refusal, a backend thread for a finished job, the drain deadline), is encoded
/// straight into `buf` under one lock, and the writer takes the whole buffer at once. No
/// per-request message, channel or permit object travels between them: a request costs one
/// append, and a batch one wake-up and one write.
///
/// The in-flight cap counts requests read and not yet written: the reader takes one of
/// `slots` per request, and the writer gives back a batch's worth after writing it. So a
/// client that stops reading stops being read (backpressure), and `buf` never holds more
/// than `max_in_flight` replies.
struct Outbox {
    state: Mutex<OutState>,
    /// Wakes the writer: replies arrived, or the last owed reply was settled.
    ready: Notify,
    /// Requests read and not yet written, at most `max_in_flight` (permits are forgotten when
    /// taken and added back by the writer).
    slots: Semaphore,
    /// Ids of requests not yet answered, for `duplicate_id`.
    ids: Mutex<HashSet<Id, FastHash>>,
    /// The writer gave up on the peer (or is done): readers and producers stop. `is_closed`
    /// mirrors it for the per-request checks (a token's own check takes a lock).
    closed: CancellationToken,
    is_closed: AtomicBool,
}

struct OutState {
    /// Encoded frames not yet handed to the socket.
    buf: Vec<u8>,
    /// Replies in `buf`: the slots the writer gives back once they are written.
    replies: usize,
    /// Jobs handed to a backend whose reply is not in `buf` yet.
    owed: usize,
    /// The reader has returned: with nothing owed and `buf` empty, the writer ends.
    reader_done: bool,
}

impl Outbox {
    fn new(max_in_flight: usize) -> Self {
        Outbox {
            state: Mutex::new(OutState {
                buf: Vec::with_capacity(4096),
                replies: 0,
                owed: 0,
                reader_done: false,
            }),
            ready: Notify::new(),
            slots: Semaphore::new(max_in_flight),
            ids: Mutex::new(HashSet::default()),
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
        }
    }

    fn close(&self) {
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
    }

    fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Encodes `reply` into the outgoing buffer, stamping `server_us` now if the client asked
    /// for timings, and frees the id it answers. `settles` says the reply pays a debt counted
    /// in `owed` (a backend job's).
    fn push(
        &self,
        mut reply: Reply,
        read_at: Option<Instant>,
        releases: Option<&Id>,
        settles: bool,
    ) {
        if let Some(id) = releases {
            self.ids.lock().remove(id);
        }
        if let Some(at) = read_at {
            let server_us = at.elapsed().as_secs_f64() * 1e6;
            if let Reply::Result { t: Some(t), .. } | Reply::Pong { t: Some(t), .. } = &mut reply {
                t.server_us = server_us;
            }
        }
        let mut st = self.state.lock();
        let was_empty = st.buf.is_empty();
        if !self.is_closed() {
            put_frame_with(&mut st.buf, |o| reply.encode_into(o));
            st.replies += 1;
        }
        if settles {
            st.owed -= 1;
        }
        let wake = was_empty && !st.buf.is_empty() || st.owed == 0 && st.reader_done;
        drop(st);
        if wake {
            self.ready.notify_one();
        }
    }

    /// A job's reply will never come (the job was dropped with its peer gone): its debt and
    /// its slot are given up.
    fn forgive(&self) {
        let mut st = self.state.lock();
        st.owed -= 1;
        let wake = st.owed == 0 && st.reader_done;
        drop(st);
        self.slots.add_permits(1);
        if wake {
            self.ready.notify_one();
        }
    }

    fn reader_done(&self) {
        self.state.lock().reader_done = true;
        self.ready.notify_one();
    }
}

/// One reply owed to a connection for a job handed to the backend. Taken exactly once, by the
/// job's completion or, at the drain deadline, by the server itself; dropped unanswered (a
/// job discarded because its peer is gone), it gives up the debt. Keeping it here rather than
/// in the completion lets the server end a connection whose job is stuck on a thread that
/// cannot be stopped.
struct Owed {
    out: Option<Arc<Outbox>>,
}

impl Owed {
    fn new(out: &Arc<Outbox>) -> Self {
        out.state.lock().owed += 1;
        Owed {
            out: Some(out.clone()),
        }
    }

    fn answer(mut self, reply: Reply, read_at: Option<Instant>, releases: &Id) {
        if let Some(out) = self.out.take() {
            out.push(reply, read_at, Some(releases), true);
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            out.forgive();
        }
    }
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
    /// Mirrors `shutdown` for the per-request check, which must not take the token's lock
    /// (shared by every connection).
    stopping: Arc<AtomicBool>,
    out: Arc<Outbox>,
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
        stopping: Arc<AtomicBool>,
    ) -> Self {
        let out = Arc::new(Outbox::new(config.max_in_flight));
        Handler {
            backend,
            config,
            shutdown,
            stopping,
            out,
            ledger: Arc::new(Mutex::new(HashMap::default())),
            next_seq: AtomicU64::new(0),
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn serve(self, socket: TcpStream, _slot: OwnedSemaphorePermit) {
        let (rd, wr) = socket.into_split();
        let writer = write_replies(wr, &self.out, self.config.idle_timeout, &self.gone);
        let reader = async {
            self.read_requests(FrameReader::new(rd, self.config.max_frame))
                .await;
            self.out.reader_done();
        };
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
                owed.answer(reply, o.read_at, &o.id);
            }
        }
    }

    /// Reads and dispatches requests until the peer closes, a framing error, or shutdown.
    async fn read_requests(&self, mut frames: FrameReader<tokio::net::tcp::OwnedReadHalf>) {
        let cap = self.config.max_in_flight;
        let out = &self.out;
        loop {
            // Requests pipelined into one read are dispatched back to back: while a slot is
            // free and a whole frame is buffered there is nothing to wait for, so the waits
            // below (and their futures) are skipped. Shutdown and a gone writer are still
            // seen before each request.
            if self.stopping.load(Ordering::Acquire) || out.is_closed() {
                return;
            }
            match out.slots.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => tokio::select! {
                    p = out.slots.acquire() => match p {
                        Ok(p) => p.forget(),
                        Err(_) => return,
                    },
                    _ = self.shutdown.cancelled() => return,
                    // The writer gave up on the peer: reading more would only make work for
                    // no one.
                    _ = out.closed.cancelled() => return,
                },
            }
            let frame = match frames.buffered_frame() {
                Ok(None) => {
                    // Idle means nothing arriving and nothing owed: a client waiting on a
                    // slow job is not idle.
                    let idle = (out.slots.available_permits() + 1 == cap)
                        .then_some(self.config.idle_timeout);
                    let limits = ReadLimits {
                        idle,
                        frame: Some(self.config.frame_deadline),
                    };
                    tokio::select! {
                        f = frames.read_frame(limits) => f,
                        _ = self.shutdown.cancelled() => return,
                        _ = out.closed.cancelled() => return,
                    }
                }
                buffered => buffered,
            };
            match frame {
                Ok(Some(payload)) => self.dispatch(&payload, frames.read_at()),
                Ok(None) => return,
                Err(e @ (FrameError::TooLarge { .. } | FrameError::Deadline(_))) => {
                    let reply = Reply::Error(ErrorReply::new(
                        None,
                        ErrorCode::FrameTooLarge,
                        format!("{e}; closing the connection"),
                    ));
                    out.push(reply, None, None, false);
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

    /// Answers or hands on one request, read in full at `read_at`. The request holds one of
    /// the connection's slots, given back when its reply is written.
    fn dispatch(&self, payload: &[u8], read_at: Instant) {
        let out = &self.out;
        let req = match parse_request(payload) {
            Ok(r) => r,
            Err(e) => return out.push(Reply::Error(e), None, None, false),
        };
        let read_at = req.timing.then_some(read_at);
        let id = req.id;
        // A ping is answered here and now, so its id is in flight only if another request
        // holds it: it is checked against the set, not entered in it. A compute request holds
        // its id until its reply.
        let fresh = {
            let mut ids = out.ids.lock();
            match &req.cmd {
                Command::Ping => ids.is_empty() || !ids.contains(&id),
                Command::Compute { .. } => ids.insert(id.clone()),
            }
        };
        if !fresh {
            let detail = format!("a request with id {id} is already in flight on this connection");
            let reply = Reply::Error(ErrorReply::new(Some(id), ErrorCode::DuplicateId, detail));
            return out.push(reply, read_at, None, false);
        }
        let (kernel, n) = match req.cmd {
            Command::Ping => {
                let t = read_at.map(|_| Timings::default());
                return out.push(Reply::Pong { id, t }, read_at, None, false);
            }
            Command::Compute { kernel, n } => (kernel, n),
        };
        let refuse = |code: ErrorCode, detail: String| {
            let reply = Reply::Error(ErrorReply::new(Some(id.clone()), code, detail));
            out.push(reply, read_at, Some(&id), false)
        };
        let kernel = match Kernel::parse(&kernel) {
            Some(Kernel::Crash) if !self.config.allow_crash => {
                return refuse(
                    ErrorCode::UnknownKernel,
                    "kernel \"crash\" is disabled; start the server with --allow-crash".into(),
                )
            }
            Some(k) if k.is_runnable() => match k.why_unavailable() {
                Some(why) => return refuse(ErrorCode::UnknownKernel, why),
                None => k,
            },
            _ if user::is_user_name(&kernel) => {
                let detail = user::not_loaded_detail(&kernel);
                return refuse(ErrorCode::UnknownKernel, detail);
            }
            _ => {
                let mut names = Kernel::builtin_names();
                names.extend(user::loaded_names());
                return refuse(
                    ErrorCode::UnknownKernel,
                    format!("unknown kernel {kernel:?}; known: {}", names.join(", ")),
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
            );
        }
        let job = Job {
            kernel,
            n,
            submitted_ns: crate::backend::mono_ns(),
            abandoned: Some(self.gone.clone()),
        };
        // The reply owed travels with the job, through the ledger; if the backend refuses the
        // job, it comes back here.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Outstanding {
            id: id.clone(),
            read_at,
            owed: Mutex::new(Some(Owed::new(out))),
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
                owed.answer(reply, read_at, &mine.id);
            }),
        );
        if let Err(f) = submitted {
            self.ledger.lock().remove(&seq);
            if let Some(owed) = entry.owed.lock().take() {
                let reply = Reply::Error(ErrorReply::new(Some(id.clone()), f.code, f.detail));
                owed.answer(reply, read_at, &id);
            }
        }
    }
}

/// Writes replies until the reader is done and every owed reply is out. Each pass takes the
/// whole outgoing buffer (up to `max_in_flight` replies) and writes it in one go. A peer that
/// does not take a batch within `stall` (it stopped reading) is given up on: otherwise it
/// would hold its connection slot, and the replies queued for it, forever.
async fn write_replies(mut wr: OwnedWriteHalf, out: &Outbox, stall: Duration, gone: &AtomicBool) {
    let mut spare = Vec::with_capacity(4096);
    loop {
        let written = {
            let mut st = out.state.lock();
            if st.buf.is_empty() {
                if st.reader_done && st.owed == 0 {
                    break;
                }
                None
            } else {
                std::mem::swap(&mut st.buf, &mut spare);
                Some(std::mem::take(&mut st.replies))
            }
        };
        let Some(replies) = written else {
            // A push after the check above left a stored notification: no wake-up is lost.
            out.ready.notified().await;
            continue;
        };
        if !matches!(
            tokio::time::timeout(stall, wr.write_all(&spare)).await,
            Ok(Ok(()))
        ) {
            // The peer is gone or not reading. Its jobs not yet started are dropped; replies
            // still to come are discarded, and the reader stops.
            gone.store(true, Ordering::Release);
            out.close();
            return;
        }
        spare.clear();
        out.slots.add_permits(replies);
    }
    out.close();
    let _ = wr.shutdown().await;
}
