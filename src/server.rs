//! The socket side: accept connections, read pipelined requests, hand compute jobs to the
//! backend, write replies in whatever order they finish. The same code serves every backend.
//!
//! Each connection is one task running a reader and a writer side by side. The reader stops
//! taking frames from the socket while the connection has `max_in_flight` requests
//! unanswered (backpressure instead of unbounded buffering). Every request produces exactly one
//! reply, encoded by whoever answers it straight into the connection's `Outbox`; the writer
//! takes whatever replies are there in one write.
//!
//! On shutdown a connection keeps reading: its jobs in flight finish (within the drain time),
//! and every request read meanwhile is answered `shutting_down` rather than run. Once nothing
//! of it is in flight and every request read has its reply, the server closes the connection,
//! reading on a little so that bytes the client sent meanwhile do not turn the close into a
//! reset.
//!
//! [`serve`] is the `serve` subcommand as one call: where the backend kind decides how the
//! server starts (a pool and a listener, or [`prefork`]'s supervisor).

mod admission;
pub mod child;
pub mod prefork;
mod serve;

pub use serve::{serve, serve_until_signalled, ServeConfig, ServerConfig};

use crate::backend::{Backend, Job, JobResult};
use crate::clock::Stamp;
use crate::connection::{put_frame_with, FrameError, FrameReader, ReadLimits};
use crate::kernel::{user, Kernel};
use crate::protocol::{
    encode_pong, parse_request, Command, ErrorCode, ErrorReply, Id, Reply, Timings,
};
use admission::{Admission, Place};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The hasher for the per-connection maps touched on every request. SipHash cost 6 % of the
/// I/O thread under a ping flood; foldhash is several times cheaper and still seeded per
/// process, and each map is capped at `--max-in-flight` entries anyway.
type FastHash = foldhash::fast::RandomState;

/// After a connection closed by shutdown has sent its last reply: how long it waits for the
/// next byte from the client, and how long at most, before closing the socket (see
/// [`linger`]).
const LINGER_GAP: Duration = Duration::from_millis(100);
const LINGER_MAX: Duration = Duration::from_millis(500);

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight jobs
/// finish and their replies go out (up to `config.drain`), and stops the backend.
///
/// Returns an error only when the backend can no longer serve (e.g. workers cannot start).
pub async fn run(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    config: ServerConfig,
    admission: Admission,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The request clock is chosen (and the TSC calibrated) now, not on the first timed request.
    crate::clock::init();
    let config = Arc::new(config);
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
                    match admission.admit().await {
                        Some(place) => {
                            let handler = Handler::new(
                                backend.clone(),
                                config.clone(),
                                shutdown.clone(),
                                stopping.clone(),
                            );
                            tracker.spawn(handler.serve(socket, place));
                        }
                        None => {
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
    /// Wakes a draining reader: nothing is in flight any more (see [`OutState::draining`]).
    settled: Notify,
    /// Requests read and not yet written, at most `max_in_flight` (permits are forgotten when
    /// taken and added back by the writer).
    slots: Semaphore,
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
    /// Jobs handed to the backend and not answered yet, by id. One map serves three ends: an
    /// id in it is in flight (`duplicate_id`), the drain deadline answers what is left in it,
    /// and the writer waits while it is not empty. Whoever takes a job's entry out, its
    /// completion or the drain deadline, answers it, under this lock: so each job gets
    /// exactly one reply however the two race.
    in_flight: HashMap<Id, InFlight, FastHash>,
    /// The reader has returned: with nothing in flight and `buf` empty, the writer ends.
    reader_done: bool,
    /// The server is shutting down and the reader waits for the jobs in flight to be answered
    /// before it closes the connection: every change that leaves nothing in flight wakes it.
    draining: bool,
    /// The drain time is over: the reader reads nothing more.
    drain_over: bool,
}

/// Where a draining connection stands (see [`Outbox::drain`]).
#[derive(Debug, PartialEq, Eq)]
enum Drain {
    /// Jobs of the connection are still running.
    Busy,
    /// Nothing is in flight: the connection may close.
    Settled,
    /// The drain time is over: every job was answered, and the connection closes now.
    Over,
}

/// A job's entry in [`OutState::in_flight`].
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// The connection's count of jobs when this one was handed on: a completion settles only
    /// its own job's entry, never a later request's that reuses the id.
    seq: u64,
    /// When the request was read, if the client asked for timings.
    read_at: Option<Stamp>,
}

impl OutState {
    /// The writer has to wake: its buffer just stopped being empty, or it is waiting for the
    /// last job of a finished reader.
    fn writer_has_news(&self, was_empty: bool) -> bool {
        was_empty && !self.buf.is_empty() || self.reader_done && self.in_flight.is_empty()
    }
}

impl Outbox {
    fn new(max_in_flight: usize) -> Self {
        Outbox {
            state: Mutex::new(OutState {
                buf: Vec::with_capacity(4096),
                replies: 0,
                in_flight: HashMap::default(),
                reader_done: false,
                draining: false,
                drain_over: false,
            }),
            ready: Notify::new(),
            settled: Notify::new(),
            slots: Semaphore::new(max_in_flight),
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

    /// Encodes `reply` into `st.buf`, its `server_us` (if the client asked for timings)
    /// already stamped. Once the writer has given up, replies are dropped, not buffered.
    fn encode(&self, st: &mut OutState, reply: &Reply) {
        self.encode_with(st, |o| reply.encode_into(o));
    }

    /// Appends one reply frame whose payload `fill` writes (see [`Outbox::encode`]).
    fn encode_with(&self, st: &mut OutState, fill: impl FnOnce(&mut Vec<u8>)) {
        if !self.is_closed() {
            put_frame_with(&mut st.buf, fill);
            st.replies += 1;
        }
    }

    /// Runs `f` on the state under its lock, then wakes the writer if `f` gave it something
    /// to do.
    fn with_state<T>(&self, f: impl FnOnce(&mut OutState) -> T) -> T {
        let mut st = self.state.lock();
        let was_empty = st.buf.is_empty();
        let r = f(&mut st);
        let wake = st.writer_has_news(was_empty);
        let settled = st.draining && st.in_flight.is_empty();
        drop(st);
        if wake {
            self.ready.notify_one();
        }
        if settled {
            self.settled.notify_one();
        }
        r
    }

    /// The reader is draining from now on (see [`OutState::draining`]); says where the
    /// connection stands.
    fn drain(&self) -> Drain {
        let mut st = self.state.lock();
        st.draining = true;
        if st.drain_over {
            Drain::Over
        } else if st.in_flight.is_empty() {
            Drain::Settled
        } else {
            Drain::Busy
        }
    }

    /// Sends a reply for a request that has no entry in flight: a refusal, or a framing error.
    fn push(&self, mut reply: Reply, read_at: Option<Stamp>) {
        stamp(&mut reply, read_at);
        self.with_state(|st| self.encode(st, &reply));
    }

    /// Answers a ping, unless a job in flight holds its id. Returns whether it was answered.
    fn pong(&self, id: &Id, read_at: Option<Stamp>) -> bool {
        let t = read_at.map(|at| Timings {
            server_us: server_us(at),
            ..Timings::default()
        });
        self.with_state(|st| {
            let fresh = st.in_flight.is_empty() || !st.in_flight.contains_key(id);
            if fresh {
                self.encode_with(st, |o| encode_pong(id, t.as_ref(), o));
            }
            fresh
        })
    }

    /// Enters a job for `kernel` in flight under `id`, or answers it at once: with
    /// `duplicate_id` if a job in flight holds the id, else with the refusal if `kernel` is
    /// one. Returns the kernel to run when the job was entered.
    fn admit(
        &self,
        id: &Id,
        job: InFlight,
        kernel: Result<Kernel, (ErrorCode, String)>,
    ) -> Option<Kernel> {
        self.with_state(|st| {
            let (code, detail) = if st.in_flight.contains_key(id) {
                (ErrorCode::DuplicateId, duplicate_detail(id))
            } else {
                match kernel {
                    Ok(kernel) => {
                        st.in_flight.insert(id.clone(), job);
                        return Some(kernel);
                    }
                    Err(refusal) => refusal,
                }
            };
            let mut reply = Reply::Error(ErrorReply::new(Some(id.clone()), code, detail));
            stamp(&mut reply, job.read_at);
            self.encode(st, &reply);
            None
        })
    }

    /// Answers job `seq` with `reply` (which carries its id), if the job is still in flight:
    /// a job the drain deadline has answered already is not answered again.
    fn settle(&self, seq: u64, mut reply: Reply, read_at: Option<Stamp>) {
        stamp(&mut reply, read_at);
        let Some(id) = reply.id() else {
            debug_assert!(false, "a job's reply always carries its id");
            return;
        };
        self.with_state(|st| {
            if st.in_flight.get(id).is_some_and(|j| j.seq == seq) {
                st.in_flight.remove(id);
                self.encode(st, &reply);
            }
        });
    }

    /// The drain deadline: every job still in flight is answered `shutting_down` now, and the
    /// reader stops.
    fn abandon_in_flight(&self) {
        self.with_state(|st| {
            st.drain_over = true;
            for (id, job) in std::mem::take(&mut st.in_flight) {
                let mut reply = Reply::Error(ErrorReply::new(
                    Some(id),
                    ErrorCode::ShuttingDown,
                    "drain time exceeded before the job finished",
                ));
                stamp(&mut reply, job.read_at);
                self.encode(st, &reply);
            }
        });
    }

    fn reader_done(&self) {
        self.state.lock().reader_done = true;
        self.ready.notify_one();
    }
}

fn duplicate_detail(id: &Id) -> String {
    format!("a request with id {id} is already in flight on this connection")
}

/// Stamps a timed result's `server_us` (see [`server_us`]). Errors carry no timings, and a
/// pong is stamped where it is encoded ([`Outbox::pong`]).
fn stamp(reply: &mut Reply, read_at: Option<Stamp>) {
    if let (Some(at), Reply::Result { t: Some(t), .. }) = (read_at, reply) {
        t.server_us = server_us(at);
    }
}

/// SPEC §2.1's `server_us` for a request read at `read_at`: from then to now, the moment its
/// reply is encoded.
fn server_us(read_at: Stamp) -> f64 {
    read_at.elapsed_us()
}

/// Serves one client connection: reads its requests, hands them on, and owes each one reply.
struct Handler {
    backend: Arc<dyn Backend>,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
    /// Mirrors `shutdown` for the per-request check, which must not take the token's lock
    /// (shared by every connection).
    stopping: Arc<AtomicBool>,
    out: Arc<Outbox>,
    /// Compute requests read so far: numbers each one's `seq`.
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
            next_seq: AtomicU64::new(0),
            gone: Arc::new(AtomicBool::new(false)),
        }
    }

    async fn serve(self, socket: TcpStream, _place: Place) {
        let (rd, wr) = socket.into_split();
        let writer = write_replies(wr, &self.out, self.config.idle_timeout, &self.gone);
        let reader = async {
            let mut frames = FrameReader::new(rd, self.config.max_frame);
            let end = self.read_requests(&mut frames).await;
            self.out.reader_done();
            if end == ReadEnd::Drained {
                // The client has not closed: once the writer has sent the last reply, read
                // on for a moment before the socket closes.
                self.out.closed.cancelled().await;
                linger(frames.into_inner()).await;
            }
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
                self.out.abandon_in_flight();
                work.await;
            }
        }
    }

    /// Reads and dispatches requests until the peer closes, a framing error, or, once the
    /// server is shutting down, until nothing of this connection is in flight and every
    /// request read has been answered.
    ///
    /// A shutdown does not stop the reading: requests already read or arriving still get
    /// their one reply each, `shutting_down`, while the jobs in flight finish (or the drain
    /// time runs out and answers them).
    async fn read_requests(&self, frames: &mut FrameReader<OwnedReadHalf>) -> ReadEnd {
        let cap = self.config.max_in_flight;
        let out = &self.out;
        // Seen here once, so a wake-up by the shutdown token is not taken again and again
        // before the flag that mirrors it is set.
        let mut draining = false;
        loop {
            // Requests pipelined into one read are dispatched back to back: while a slot is
            // free and a whole frame is buffered there is nothing to wait for, so the waits
            // below (and their futures) are skipped. Shutdown and a gone writer are still
            // seen before each request.
            if out.is_closed() {
                return ReadEnd::Done;
            }
            draining = draining || self.stopping.load(Ordering::Acquire);
            // What the socket held when, draining, nothing was in flight any more.
            let mut last = None;
            match draining.then(|| out.drain()) {
                Some(Drain::Over) => return ReadEnd::Drained,
                Some(Drain::Settled) if !frames.ready() => {
                    // The connection closes now, unless a request (or the close, or a framing
                    // error) has already arrived: that is handled first, as any other.
                    let now = ReadLimits {
                        idle: None,
                        frame: Some(self.config.frame_deadline),
                    };
                    match tokio::time::timeout(Duration::ZERO, frames.wait_for_frame(now)).await {
                        Ok(read) => last = Some(read),
                        Err(_) => return ReadEnd::Drained,
                    }
                }
                _ => {}
            }
            match out.slots.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => tokio::select! {
                    p = out.slots.acquire() => match p {
                        Ok(p) => p.forget(),
                        Err(_) => return ReadEnd::Done,
                    },
                    _ = self.shutdown.cancelled(), if !draining => {
                        draining = true;
                        continue;
                    }
                    _ = out.settled.notified(), if draining => continue,
                    // The writer gave up on the peer: reading more would only make work for
                    // no one.
                    _ = out.closed.cancelled() => return ReadEnd::Done,
                },
            }
            let more = if let Some(read) = last {
                read
            } else if frames.ready() {
                Ok(true)
            } else {
                // Idle means nothing arriving and nothing owed: a client waiting on a slow job
                // is not idle.
                let idle =
                    (out.slots.available_permits() + 1 == cap).then_some(self.config.idle_timeout);
                let limits = ReadLimits {
                    idle,
                    frame: Some(self.config.frame_deadline),
                };
                tokio::select! {
                    more = frames.wait_for_frame(limits) => more,
                    _ = self.shutdown.cancelled(), if !draining => {
                        out.slots.add_permits(1);
                        draining = true;
                        continue;
                    }
                    _ = out.settled.notified(), if draining => {
                        out.slots.add_permits(1);
                        continue;
                    }
                    _ = out.closed.cancelled() => return ReadEnd::Done,
                }
            };
            // The frame is lent from `frames` until the next call, so its read time is read
            // first.
            let read_at = frames.read_at();
            let frame = match more {
                Ok(true) => frames.buffered_frame(),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            match frame {
                Ok(Some(payload)) => self.dispatch(payload, read_at, draining),
                Ok(None) => return ReadEnd::Done,
                Err(e @ (FrameError::TooLarge { .. } | FrameError::Deadline(_))) => {
                    let reply = Reply::Error(ErrorReply::new(
                        None,
                        ErrorCode::FrameTooLarge,
                        format!("{e}; closing the connection"),
                    ));
                    out.push(reply, None);
                    return ReadEnd::Done;
                }
                Err(FrameError::Idle(_)) => return ReadEnd::Done,
                // The peer vanished (reset, or closed mid-frame): nobody will read replies, so
                // queued jobs need not run. A clean close between frames may be a half-close
                // by a client still waiting for its replies, and is not taken as gone.
                Err(FrameError::Truncated(_) | FrameError::Io(_)) => {
                    self.gone.store(true, Ordering::Release);
                    return ReadEnd::Done;
                }
            }
        }
    }

    /// Answers or hands on one request, read in full at `read_at`. The request holds one of
    /// the connection's slots, given back when its reply is written. While `draining`, a
    /// request is answered `shutting_down` instead of run.
    fn dispatch(&self, payload: &[u8], read_at: Stamp, draining: bool) {
        let out = &self.out;
        let req = match parse_request(payload) {
            Ok(r) => r,
            Err(e) => return out.push(Reply::Error(e), None),
        };
        if draining {
            let reply = Reply::Error(ErrorReply::new(
                Some(req.id),
                ErrorCode::ShuttingDown,
                "the server is shutting down: requests read after the signal are not run",
            ));
            return out.push(reply, None);
        }
        let read_at = req.timing.then_some(read_at);
        let id = req.id;
        let (kernel, n) = match req.cmd {
            // A ping is answered here and now, so its id is in flight only if a job holds it.
            Command::Ping => {
                if !out.pong(&id, read_at) {
                    let detail = duplicate_detail(&id);
                    let reply =
                        Reply::Error(ErrorReply::new(Some(id), ErrorCode::DuplicateId, detail));
                    out.push(reply, read_at);
                }
                return;
            }
            Command::Compute { kernel, n } => (kernel, n),
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let Some(kernel) = out.admit(&id, InFlight { seq, read_at }, self.check(&kernel, n)) else {
            return;
        };
        let job = Job {
            kernel,
            n,
            submitted_ns: crate::backend::mono_ns(),
            abandoned: Some(self.gone.clone()),
        };
        // The completion answers the job through its entry in flight, unless the drain
        // deadline took the entry first.
        let done = {
            let (out, id) = (out.clone(), id.clone());
            Box::new(move |outcome: JobResult| {
                let reply = match outcome {
                    Ok(d) => Reply::Result {
                        id,
                        result: d.result,
                        t: read_at.map(|_| Timings {
                            queue_us: d.queue_us,
                            compute_us: d.compute_us,
                            server_us: 0.0,
                        }),
                    },
                    Err(f) => Reply::Error(ErrorReply::new(Some(id), f.code, f.detail)),
                };
                out.settle(seq, reply, read_at);
            })
        };
        if let Err(f) = self.backend.submit(job, done) {
            let reply = Reply::Error(ErrorReply::new(Some(id), f.code, f.detail));
            out.settle(seq, reply, read_at);
        }
    }

    /// The kernel a compute request names, if this server runs it at that `n`; else the
    /// refusal to send.
    fn check(&self, kernel: &str, n: u64) -> Result<Kernel, (ErrorCode, String)> {
        let unknown = |detail: String| Err((ErrorCode::UnknownKernel, detail));
        let kernel = match Kernel::parse(kernel) {
            Some(Kernel::Crash) if !self.config.allow_crash => {
                return unknown(
                    "kernel \"crash\" is disabled; start the server with --allow-crash".into(),
                )
            }
            Some(k) if k.is_runnable() => match k.why_unavailable() {
                Some(why) => return unknown(why),
                None => k,
            },
            _ if user::is_user_name(kernel) => return unknown(user::not_loaded_detail(kernel)),
            _ => {
                let mut names = Kernel::builtin_names();
                names.extend(user::loaded_names());
                return unknown(format!(
                    "unknown kernel {kernel:?}; known: {}",
                    names.join(", ")
                ));
            }
        };
        if n > kernel.max_n() {
            return Err((
                ErrorCode::NOutOfRange,
                format!(
                    "n = {n} is over the limit of {} for {}",
                    kernel.max_n(),
                    kernel.name()
                ),
            ));
        }
        Ok(kernel)
    }
}

/// Why a connection's reader returned.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// The client closed or vanished, broke the framing or idled out, or the writer gave up.
    Done,
    /// The server is shutting down and every request read has its reply: the server closes
    /// the connection though the client has not.
    Drained,
}

/// Reads and drops what the client still sends, until it closes too, it sends nothing for
/// [`LINGER_GAP`], or [`LINGER_MAX`] passes. Closing a socket with unread bytes makes the
/// kernel answer with a reset, and a reset can destroy the last replies on their way to the
/// client; a client that sees the close first stops sending and closes too.
async fn linger(mut rd: OwnedReadHalf) {
    let end = tokio::time::Instant::now() + LINGER_MAX;
    let mut sink = vec![0u8; 4096];
    loop {
        let gap = (tokio::time::Instant::now() + LINGER_GAP).min(end);
        match tokio::time::timeout_at(gap, tokio::io::AsyncReadExt::read(&mut rd, &mut sink)).await
        {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
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
                if st.reader_done && st.in_flight.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::peek_frame;
    use serde_json::{json, Value};

    /// The replies buffered so far, parsed.
    fn replies(out: &Outbox) -> Vec<Value> {
        let st = out.state.lock();
        let mut rest = &st.buf[..];
        let mut got = Vec::new();
        while let Some(payload) = peek_frame(rest, usize::MAX).unwrap() {
            got.push(serde_json::from_slice(payload).unwrap());
            rest = &rest[crate::connection::HEADER + payload.len()..];
        }
        assert!(rest.is_empty(), "a partial frame in the buffer");
        assert_eq!(got.len(), st.replies);
        got
    }

    fn job(seq: u64) -> InFlight {
        InFlight { seq, read_at: None }
    }

    fn result(id: Id, result: u64) -> Reply {
        Reply::Result {
            id,
            result,
            t: None,
        }
    }

    #[test]
    fn a_job_answered_at_the_drain_deadline_is_not_answered_again_by_its_completion() {
        let out = Outbox::new(8);
        let id = Id::Num(7);
        assert_eq!(out.admit(&id, job(0), Ok(Kernel::Fib)), Some(Kernel::Fib));
        out.abandon_in_flight();
        out.settle(0, result(id, 1), None);
        let got = replies(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["error"], json!("shutting_down"));
        assert_eq!(got[0]["id"], json!(7));
        assert!(out.state.lock().in_flight.is_empty());
    }

    #[test]
    fn a_late_completion_leaves_a_later_job_with_the_same_id_in_flight() {
        let out = Outbox::new(8);
        let id = Id::Str("a".into());
        out.admit(&id, job(0), Ok(Kernel::Fib)).unwrap();
        out.abandon_in_flight();
        out.admit(&id, job(1), Ok(Kernel::Fib)).unwrap();
        out.settle(0, result(id.clone(), 10), None);
        assert_eq!(out.state.lock().in_flight[&id].seq, 1);
        out.settle(1, result(id.clone(), 11), None);
        let got = replies(&out);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], json!({"id": "a", "result": 11}));
        assert!(out.state.lock().in_flight.is_empty());
    }

    #[test]
    fn an_id_in_flight_is_refused_to_jobs_and_pings_until_its_reply() {
        let out = Outbox::new(8);
        let id = Id::Num(3);
        out.admit(&id, job(0), Ok(Kernel::Fib)).unwrap();
        assert_eq!(out.admit(&id, job(1), Ok(Kernel::Fib)), None);
        assert!(!out.pong(&id, None));
        assert!(out.pong(&Id::Num(4), None));
        out.settle(0, result(id.clone(), 5), None);
        assert!(out.pong(&id, None));
        let refusal = (ErrorCode::UnknownKernel, "no such kernel".to_string());
        assert_eq!(out.admit(&id, job(2), Err(refusal)), None);
        assert!(
            out.state.lock().in_flight.is_empty(),
            "a refusal is not in flight"
        );
        let got: Vec<Value> = replies(&out)
            .into_iter()
            .map(|r| r.get("error").cloned().unwrap_or(r["id"].clone()))
            .collect();
        assert_eq!(
            got,
            [
                json!("duplicate_id"),
                json!(4),
                json!(3),
                json!(3),
                json!("unknown_kernel")
            ]
        );
    }

    /// A reader draining for shutdown waits for its connection's last job; it is woken when
    /// that job is answered, and only once it drains (other connections pay nothing).
    #[test]
    fn a_draining_reader_is_woken_when_nothing_is_left_in_flight() {
        let out = Outbox::new(8);
        let woken = |out: &Outbox| {
            let n = out.settled.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        out.admit(&Id::Num(1), job(0), Ok(Kernel::Fib)).unwrap();
        out.settle(0, result(Id::Num(1), 1), None);
        assert!(!woken(&out), "not draining: nobody to wake");
        out.admit(&Id::Num(2), job(1), Ok(Kernel::Fib)).unwrap();
        out.admit(&Id::Num(3), job(2), Ok(Kernel::Fib)).unwrap();
        assert_eq!(out.drain(), Drain::Busy, "two jobs in flight");
        out.settle(1, result(Id::Num(2), 2), None);
        assert!(!woken(&out), "one job still in flight");
        out.settle(2, result(Id::Num(3), 3), None);
        assert!(woken(&out));
        assert_eq!(out.drain(), Drain::Settled);
        out.admit(&Id::Num(4), job(3), Ok(Kernel::Fib)).unwrap();
        out.abandon_in_flight();
        assert!(woken(&out), "the drain deadline answered the last job");
        assert_eq!(out.drain(), Drain::Over);
        assert_eq!(replies(&out).len(), 4);
    }

    #[test]
    fn the_writer_is_woken_by_the_first_reply_and_by_the_last_job_of_a_finished_reader() {
        let out = Outbox::new(8);
        let woken = |out: &Outbox| {
            let n = out.ready.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        out.admit(&Id::Num(1), job(0), Ok(Kernel::Fib)).unwrap();
        assert!(!woken(&out), "entering a job has nothing for the writer");
        out.pong(&Id::Num(2), None);
        assert!(woken(&out), "the first reply in an empty buffer");
        out.pong(&Id::Num(3), None);
        assert!(!woken(&out), "the writer is already due to take the buffer");
        out.state.lock().buf.clear();
        out.reader_done();
        assert!(woken(&out));
        out.state.lock().buf.extend_from_slice(b"x");
        out.abandon_in_flight();
        assert!(woken(&out), "nothing left in flight and the reader is done");
    }
}
