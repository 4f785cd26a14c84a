//! One connection's loop: send what is due, match replies by id, expire what is overdue.
//!
//! The same loop serves every mode. The [`Schedule`] says when the next request is due (now, in
//! a closed loop; at its intended time, in an open loop), the spec's [`Stop`] says whether it
//! may still be sent, and the in-flight window (`depth`) holds it back when full. Frames that
//! fall due together go out in one write; replies that arrive together are handled with one
//! timestamp and recorded under one lock.

use super::histogram::{Recorder, Sample};
use super::schedule::{stream_rng, Schedule};
use super::spec::{Cmd, LoadSpec, Pace, Stop};
use super::timer::SendTimer;
use super::verify::{check, error_kind, kind, parse_reply, Encoder, Verdict, MAX_REPLY};
use super::window::Window;
use crate::connection::{peek_frame, Oversize, HEADER};
use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A send more than this much after its intended time counts as late.
pub const LATE: Duration = Duration::from_millis(1);
/// After its last expected reply, how long a connection waits for the server to close before
/// closing itself, watching for replies nobody asked for (see [`DriverConn::linger`]).
pub const LINGER: Duration = Duration::from_millis(250);
/// Spare room kept in the read buffer: one read takes many pipelined replies.
const READ_CHUNK: usize = 16 * 1024;
/// Reasons a connection keeps, per kind of problem; the rest are only counted.
const NOTES_PER_CONNECTION: usize = 4;
const KERNEL_STREAM: u64 = 2;

/// What every connection of a run shares.
pub(crate) struct Plan {
    pub spec: LoadSpec,
    pub encoder: Encoder,
    /// Expected result per mix entry (none for ping).
    pub expected: super::consistency::Expected,
    /// Picks a mix entry by weight; `None` when there is only one.
    pub weights: Option<WeightedIndex<u32>>,
    /// When the first request may go out (warmup starts).
    pub start: Instant,
    /// When measuring starts: requests intended before it are warmup.
    pub measure_start: Instant,
    /// When sending stops, for a duration-bounded run.
    pub end: Option<Instant>,
    /// Where each connection's ids start: unique across the run (see [`super::ids`]).
    pub ids: super::ids::RunIds,
    pub recorder: Mutex<Recorder>,
}

/// One connection's counts, merged across connections at the end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Verified replies to measured requests.
    pub ok: u64,
    /// Of `ok`, those inside a duration-bounded window (all, if count-bounded): throughput's.
    pub in_window: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Measured requests sent more than [`LATE`] after their intended time.
    pub late_sends: u64,
    /// Open loop, duration-bounded: measured requests whose intended time passed unsent.
    pub unsent: u64,
    /// Replies that arrived after their request had been counted as a timeout.
    pub late_replies: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub warmup_sent: u64,
    pub warmup_ok: u64,
    pub warmup_errors: BTreeMap<&'static str, u64>,
    /// Latest actual send of a measured request.
    pub last_send: Option<Instant>,
    /// Latest intended send time of a measured request that was sent.
    pub last_intended: Option<Instant>,
    /// Latest verified reply to a measured request.
    pub last_reply: Option<Instant>,
    /// Reasons worth reporting, without the connection number so they merge.
    pub notes: Vec<String>,
}

struct InFlight {
    intended: Instant,
    sent: Instant,
    entry: usize,
    warm: bool,
}

/// One driver connection's state apart from the socket and its buffers: what is scheduled,
/// what is in flight, what was counted. [`drive`] is its loop.
struct DriverConn {
    plan: Arc<Plan>,
    schedule: Schedule,
    rng: StdRng,
    /// The ids this connection has left to send, in order.
    ids: super::ids::Sequence,
    /// Keyed by id; ids grow with send time, so the first entry is the oldest.
    in_flight: Window<InFlight>,
    /// Ids counted as timeouts whose replies may still come.
    expired: HashSet<u64>,
    sending: bool,
    samples: Vec<Sample>,
    tally: Tally,
}

/// `start + secs`, saturating far in the future instead of overflowing.
fn at(start: Instant, secs: f64) -> Instant {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| start.checked_add(d))
        .unwrap_or_else(|| far_future(start))
}

fn far_future(from: Instant) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    from.checked_add(YEAR).unwrap_or(from)
}

/// Drives one connection until its requests are sent and answered (or expired), or the
/// connection fails; never longer than the stop plus one timeout (and the [`LINGER`]).
pub(crate) async fn drive(mut stream: TcpStream, index: u32, plan: Arc<Plan>) -> Tally {
    let depth = plan.spec.depth as usize;
    let timeout = plan.spec.timeout;
    let mut conn = DriverConn {
        schedule: Schedule::new(
            &plan.spec.pace,
            index,
            plan.spec.connections,
            plan.spec.seed,
        ),
        rng: stream_rng(plan.spec.seed, index, KERNEL_STREAM),
        ids: plan.ids.connection(index),
        in_flight: Window::new((4 * depth).max(64)),
        expired: HashSet::new(),
        sending: true,
        samples: Vec::with_capacity(depth.min(1024)),
        tally: Tally::default(),
        plan,
    };
    let mut timer = match conn.spec().pace {
        Pace::Closed => None,
        Pace::Open { .. } => conn.precise_timer(SendTimer::new()),
    };
    let (mut rd, mut wr) = stream.split();
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf: Vec<u8> = Vec::with_capacity(depth.min(256) * 96);
    let mut wake_at = far_future(Instant::now());
    let wake = tokio::time::sleep_until(wake_at.into());
    tokio::pin!(wake);
    loop {
        if conn.sending {
            conn.send_due(&mut wbuf);
            if !wbuf.is_empty() {
                let written = tokio::time::timeout(timeout, wr.write_all(&wbuf)).await;
                wbuf.clear();
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        conn.fail(&format!("write failed: {e}"));
                        break;
                    }
                    Err(_) => {
                        conn.fail(&format!(
                            "the server stopped reading: a write stalled for {}",
                            humantime::format_duration(timeout)
                        ));
                        break;
                    }
                }
            }
        }
        if !conn.sending && conn.in_flight.is_empty() {
            conn.linger(&mut rd, &mut wr, &mut rbuf).await;
            break;
        }
        // Sends wake on the precise timer when there is one, on tokio's otherwise.
        let mut next = conn.next_deadline();
        let next_send = conn.next_send();
        if let Some(t) = timer.as_mut() {
            if let Err(e) = t.arm(next_send) {
                timer = conn.precise_timer(Err(e));
            }
        }
        if timer.is_none() {
            next = next_send.map_or(next, |s| s.min(next));
        }
        if next != wake_at {
            wake.as_mut().reset(next.into());
            wake_at = next;
        }
        let send_timer = timer.as_ref().filter(|t| t.armed().is_some());
        rbuf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = rd.read_buf(&mut rbuf) => match read {
                Ok(0) => {
                    conn.fail("the server closed the connection");
                    break;
                }
                Ok(_) => {
                    if let Err(reason) = conn.on_bytes(&mut rbuf) {
                        conn.count(kind::BAD_REPLY, false, Some(reason));
                        conn.fail("closed after a reply that breaks the protocol");
                        break;
                    }
                }
                Err(e) => {
                    conn.fail(&format!("read failed: {e}"));
                    break;
                }
            },
            fired = async { send_timer?.fired().await.err() }, if send_timer.is_some() => {
                if let Some(t) = timer.as_mut() {
                    t.disarmed();
                }
                if let Some(e) = fired {
                    timer = conn.precise_timer(Err(e));
                }
            }
            () = &mut wake => {
                let now = Instant::now();
                // The end can pass while the window is full and nothing is sent: stop sending
                // here too, or the end (now in the past) would wake this loop again at once.
                if conn.plan.end.is_some_and(|end| now >= end) {
                    conn.stop_sending();
                }
                conn.expire(now);
            }
        }
    }
    conn.flush_samples();
    conn.tally
}

impl DriverConn {
    fn spec(&self) -> &LoadSpec {
        &self.plan.spec
    }

    /// Whether a request intended for `intended` may still go out at `now`.
    fn may_send(&self, intended: Instant, now: Instant) -> bool {
        match (self.spec().stop, self.plan.end) {
            (Stop::Duration(_), Some(end)) => intended < end && now < end,
            (Stop::Duration(_), None) => false,
            (Stop::Requests(r), _) => intended < self.plan.measure_start || self.tally.sent < r,
        }
    }

    /// Encodes every request that is due and fits in the window into `out`.
    fn send_due(&mut self, out: &mut Vec<u8>) {
        let now = Instant::now();
        let depth = self.spec().depth as usize;
        while self.in_flight.len() < depth {
            let intended = match self.schedule.next_due() {
                None => now,
                Some(secs) => at(self.plan.start, secs),
            };
            if !self.may_send(intended, now) {
                self.stop_sending();
                return;
            }
            if intended > now {
                return;
            }
            let Some(id) = self.ids.take() else {
                self.out_of_ids();
                return;
            };
            self.schedule.advance();
            let entry = match &self.plan.weights {
                Some(w) => w.sample(&mut self.rng),
                None => 0,
            };
            self.plan.encoder.encode(entry, id, out);
            let warm = intended < self.plan.measure_start;
            if warm {
                self.tally.warmup_sent += 1;
            } else {
                self.tally.sent += 1;
                self.tally.last_send = Some(now);
                self.tally.last_intended = Some(intended);
                if now.saturating_duration_since(intended) > LATE {
                    self.tally.late_sends += 1;
                }
            }
            let sent = InFlight {
                intended,
                sent: now,
                entry,
                warm,
            };
            self.in_flight.insert(id, sent);
        }
    }

    /// The connection has sent every id of its range: sending another would repeat an id
    /// of the run (see [`super::ids`]), so it stops, and the run fails.
    fn out_of_ids(&mut self) {
        let reason = format!(
            "the connection used up its {} request ids and stopped sending rather than reuse one; run fewer requests per connection",
            self.plan.ids.per_connection()
        );
        self.count(kind::IDS_EXHAUSTED, false, Some(reason));
        self.stop_sending();
    }

    /// Stops sending; in a duration-bounded open loop, counts the scheduled requests that
    /// never went out.
    fn stop_sending(&mut self) {
        if !self.sending {
            return;
        }
        self.sending = false;
        if let Some(end) = self.plan.end {
            let offset = |t: Instant| t.saturating_duration_since(self.plan.start).as_secs_f64();
            let (warm_end, end) = (offset(self.plan.measure_start), offset(end));
            self.schedule.skip_until(warm_end);
            self.tally.unsent += self.schedule.skip_until(end);
        }
    }

    /// When the next scheduled request is due, if the loop may send it when it is.
    fn next_send(&self) -> Option<Instant> {
        if !self.sending || self.in_flight.len() >= self.spec().depth as usize {
            return None;
        }
        self.schedule
            .next_due()
            .map(|secs| at(self.plan.start, secs))
    }

    /// The next moment the loop must act without a reply, sends apart: the end of the run or
    /// the oldest request's timeout.
    fn next_deadline(&self) -> Instant {
        let mut next = far_future(self.plan.start);
        if let (true, Some(end)) = (self.sending, self.plan.end) {
            next = next.min(end);
        }
        if let Some((_, oldest)) = self.in_flight.first() {
            next = next.min(oldest.sent + self.spec().timeout);
        }
        next
    }

    /// Keeps a working precise timer; notes once why the loop falls back to tokio's.
    fn precise_timer(&mut self, made: std::io::Result<SendTimer>) -> Option<SendTimer> {
        match made {
            Ok(t) => Some(t),
            Err(e) => {
                self.tally.notes.push(format!(
                    "no precise send timer ({e}): sends wake on tokio's 1 ms timer and may lag up to ~2 ms"
                ));
                None
            }
        }
    }

    /// Handles every complete reply in `buf`. `Err` means the stream is beyond repair.
    fn on_bytes(&mut self, buf: &mut BytesMut) -> Result<(), String> {
        let now = Instant::now();
        let result = loop {
            // Each reply is handled in place and then dropped from the buffer: no copy, no
            // reference count, whatever the batch size.
            let payload = match peek_frame(buf, MAX_REPLY) {
                Ok(Some(payload)) => payload,
                Ok(None) => break Ok(()),
                Err(Oversize { declared, max }) => {
                    break Err(format!(
                        "a reply declares {declared} bytes, over the {max}-byte limit"
                    ))
                }
            };
            let size = HEADER + payload.len();
            if let Err(e) = self.on_reply(payload, now) {
                break Err(e);
            }
            buf.advance(size);
        };
        self.flush_samples();
        result
    }

    /// Matches one reply to its request and checks it.
    fn on_reply(&mut self, payload: &[u8], now: Instant) -> Result<(), String> {
        let parsed = parse_reply(payload)?;
        let Some(id) = parsed.id else {
            match (&parsed.reply.error, &parsed.reply.id) {
                (Some(code), _) => {
                    let detail = parsed.reply.detail.as_deref().unwrap_or("");
                    let reason = format!("error reply without an id: {code}: {detail}");
                    self.count(error_kind(code), false, Some(reason));
                }
                (None, Some(v)) if !v.is_null() => self.count(
                    kind::UNMATCHED_ID,
                    false,
                    Some(format!("reply id {v} is not an id this driver sent")),
                ),
                (None, _) => self.count(
                    kind::BAD_REPLY,
                    false,
                    Some("reply without an id".to_string()),
                ),
            }
            return Ok(());
        };
        let Some(req) = self.in_flight.remove(id) else {
            if self.expired.remove(&id) {
                self.tally.late_replies += 1;
            } else {
                self.count(
                    kind::UNMATCHED_ID,
                    false,
                    Some(format!("reply for id {id}, which is not in flight (a second reply, or an id never sent)")),
                );
            }
            return Ok(());
        };
        let spec = &self.plan.spec;
        let kernel = spec.mix.get(req.entry).map(|(k, _)| *k);
        let expected = self.plan.expected.for_reply(req.entry, parsed.reply.result);
        match check(
            &parsed.reply,
            spec.cmd,
            kernel.filter(|_| spec.cmd == Cmd::Compute),
            expected,
            spec.size_of(req.entry),
        ) {
            Verdict::Ok(_) if req.warm => self.tally.warmup_ok += 1,
            Verdict::Ok(timings) => {
                self.tally.ok += 1;
                if !matches!(self.plan.end, Some(end) if now > end) {
                    self.tally.in_window += 1;
                }
                self.tally.last_reply = Some(now);
                self.samples.push(Sample {
                    at: now,
                    latency_us: micros(now.saturating_duration_since(req.intended)),
                    service_us: micros(now.saturating_duration_since(req.sent)),
                    entry: req.entry,
                    timings,
                });
            }
            Verdict::Failed(what, reason) => self.count(what, req.warm, reason),
        }
        Ok(())
    }

    /// Ends a connection whose every request was answered (or expired): half-closes it, then
    /// reads on until the server closes its side, or for [`LINGER`] at most. A reply that
    /// arrives now answers nothing: a second reply to a request already answered, or an id
    /// never sent. Leaving at the last expected reply would miss exactly those, when they come
    /// last. This server and the original close as soon as a half-closed client's replies are
    /// out, so against them this costs one round trip, not the linger.
    async fn linger(
        &mut self,
        rd: &mut tokio::net::tcp::ReadHalf<'_>,
        wr: &mut tokio::net::tcp::WriteHalf<'_>,
        rbuf: &mut BytesMut,
    ) {
        let deadline = tokio::time::Instant::now() + LINGER;
        // Shutting the write side down is immediate: nothing is buffered in user space.
        if wr.shutdown().await.is_err() {
            return;
        }
        loop {
            rbuf.reserve(READ_CHUNK);
            match tokio::time::timeout_at(deadline, rd.read_buf(rbuf)).await {
                Ok(Ok(0)) => {
                    if !rbuf.is_empty() {
                        let reason = format!(
                            "the server closed the connection {} bytes into a reply no request was waiting for",
                            rbuf.len()
                        );
                        self.count(kind::BAD_REPLY, false, Some(reason));
                    }
                    return;
                }
                Ok(Ok(_)) => {
                    if let Err(reason) = self.on_bytes(rbuf) {
                        self.count(kind::BAD_REPLY, false, Some(reason));
                        return;
                    }
                }
                // Every request was answered: a reset or a server that keeps the connection
                // open past the linger loses nothing this run asked for.
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Counts every request still in flight as `timeout` once its time is up.
    fn expire(&mut self, now: Instant) {
        let timeout = self.spec().timeout;
        while let Some((_, oldest)) = self.in_flight.first() {
            if oldest.sent + timeout > now {
                break;
            }
            let Some((id, req)) = self.in_flight.pop_first() else {
                break;
            };
            self.expired.insert(id);
            let reason = format!("no reply within {}", humantime::format_duration(timeout));
            self.count(kind::TIMEOUT, req.warm, Some(reason));
        }
    }

    /// The connection is gone: every request in flight is lost, and so is the rest of the run
    /// on this connection (counted once when nothing was in flight).
    fn fail(&mut self, reason: &str) {
        let lost: Vec<bool> = self.in_flight.drain().iter().map(|r| r.warm).collect();
        let reason = format!(
            "{reason} ({} request{} in flight)",
            lost.len(),
            if lost.len() == 1 { "" } else { "s" }
        );
        if lost.is_empty() {
            self.count(kind::CONNECTION, false, Some(reason));
        } else {
            for (i, warm) in lost.into_iter().enumerate() {
                self.count(kind::CONNECTION, warm, (i == 0).then(|| reason.clone()));
            }
        }
        self.stop_sending();
    }

    fn count(&mut self, what: &'static str, warm: bool, reason: Option<String>) {
        let map = if warm {
            &mut self.tally.warmup_errors
        } else {
            &mut self.tally.errors
        };
        let first = !map.contains_key(what);
        *map.entry(what).or_insert(0) += 1;
        if let Some(reason) = reason {
            if first && self.tally.notes.len() < NOTES_PER_CONNECTION {
                let phase = if warm { " (warmup)" } else { "" };
                self.tally.notes.push(format!("{what}{phase}: {reason}"));
            }
        }
    }

    fn flush_samples(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut rec = self.plan.recorder.lock();
        for s in &self.samples {
            rec.record(s);
        }
        drop(rec);
        self.samples.clear();
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
