//! Who may open one more connection (`--max-connections`, SPEC §5: the next one gets
//! `too_many_connections`).
//!
//! A server of one process counts its own connections. `prefork`'s W children are W servers on
//! one port, and the limit is the server's, not each child's: so each child asks its supervisor
//! before it serves a connection, over a Unix socket that is the child's stdin, and tells it when
//! the connection ends. The supervisor is the one place the count lives, so two children
//! admitting at once cannot both take the last place, and a child that dies takes its count
//! with it: its connections died with it.
//!
//! The messages are single bytes: [`ASK`] (a reply of [`YES`] or [`NO`] follows) and
//! [`DONE`]. Asking costs a round trip to the supervisor per accepted connection, which
//! benchmarks pay while connecting, outside any measured window.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A child asks for a place.
const ASK: u8 = b'a';
/// The supervisor grants it.
const YES: u8 = b'y';
/// The server is at its limit.
const NO: u8 = b'n';
/// A child's connection has ended: its place is free.
const DONE: u8 = b'd';

/// How long a child waits for its supervisor's answer. The supervisor answers from a task of
/// its own within microseconds; one that takes this long is stopped or wedged, and the accept
/// loop (which also watches for shutdown) must not wait on it.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// How a server decides whether to serve one more connection.
pub struct Admission {
    /// This process's own places: the limit, clamped below its open-file limit.
    local: Arc<Semaphore>,
    /// A prefork child's link to its supervisor, which holds the server-wide count.
    supervisor: Option<Arc<UnixStream>>,
    /// The supervisor once failed to answer in time: a late answer would be read as the answer
    /// to a later question, so the link is not used again and every connection is refused.
    unanswered: AtomicBool,
}

/// A connection's place, given back when dropped.
pub struct Place {
    _local: OwnedSemaphorePermit,
    supervisor: Option<Arc<UnixStream>>,
}

impl Admission {
    /// Up to `max` connections in this process.
    pub fn local(max: usize) -> Admission {
        Admission {
            local: Arc::new(Semaphore::new(max)),
            supervisor: None,
            unanswered: AtomicBool::new(false),
        }
    }

    /// A prefork child's: up to `max` in this process (its open-file limit), and only while
    /// the supervisor at the other end of `link` says the server as a whole has room.
    pub fn supervised(max: usize, link: std::os::unix::net::UnixStream) -> std::io::Result<Self> {
        link.set_nonblocking(true)?;
        Ok(Admission {
            local: Arc::new(Semaphore::new(max)),
            supervisor: Some(Arc::new(UnixStream::from_std(link)?)),
            unanswered: AtomicBool::new(false),
        })
    }

    /// A place for one more connection, or `None` at the limit. Only the accept loop calls
    /// this, one call at a time: a reply on the link always answers the latest question.
    pub async fn admit(&self) -> Option<Place> {
        let local = self.local.clone().try_acquire_owned().ok()?;
        if let Some(link) = &self.supervisor {
            if self.unanswered.load(Ordering::Relaxed) {
                return None;
            }
            match tokio::time::timeout(ANSWER_LIMIT, ask(link)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return None,
                Err(_) => {
                    self.unanswered.store(true, Ordering::Relaxed);
                    tracing::error!(
                        "prefork supervisor did not answer within {ANSWER_LIMIT:?}; this child \
                         refuses new connections from now on"
                    );
                    return None;
                }
                Ok(Err(e)) => {
                    // Only a supervisor that is gone stops answering, and its children die
                    // with it: refuse rather than serve past a limit nobody keeps.
                    tracing::error!("prefork supervisor did not answer: {e}");
                    return None;
                }
            }
        }
        Some(Place {
            _local: local,
            supervisor: self.supervisor.clone(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(link) = self.supervisor.take() {
            // One byte into an idle socket's buffer: it only fails when the supervisor is gone.
            match link.try_write(&[DONE]) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move { send(&link, DONE).await });
                    }
                }
                Err(_) => {}
            }
        }
    }
}

async fn send(link: &UnixStream, byte: u8) -> std::io::Result<()> {
    loop {
        link.writable().await?;
        match link.try_write(&[byte]) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn ask(link: &UnixStream) -> std::io::Result<bool> {
    send(link, ASK).await?;
    let mut answer = [0u8; 1];
    loop {
        link.readable().await?;
        match link.try_read(&mut answer) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) => return Ok(answer[0] == YES),
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The supervisor's side: the count of every child's connections against one limit.
pub struct Ledger {
    max: usize,
    /// Open connections per live child, by the child's number.
    open: parking_lot::Mutex<HashMap<u64, usize>>,
}

impl Ledger {
    pub fn new(max: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            max,
            open: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Answers child `child` on `link` until it closes (the child exited), then forgets its
    /// connections: they closed with it.
    pub async fn serve_child(self: Arc<Self>, child: u64, link: UnixStream) {
        self.open.lock().insert(child, 0);
        let mut buf = [0u8; 256];
        'link: loop {
            if link.readable().await.is_err() {
                break;
            }
            let n = match link.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(_) => break,
            };
            for &byte in &buf[..n] {
                match byte {
                    ASK => {
                        let yes = self.take(child);
                        if send(&link, if yes { YES } else { NO }).await.is_err() {
                            break 'link;
                        }
                    }
                    DONE => self.give_back(child),
                    other => {
                        tracing::warn!(child, "prefork child sent {other:#04x} to its supervisor")
                    }
                }
            }
        }
        self.open.lock().remove(&child);
    }

    /// A place for one of `child`'s connections, if the server has one.
    fn take(&self, child: u64) -> bool {
        let mut open = self.open.lock();
        if open.values().sum::<usize>() >= self.max {
            return false;
        }
        *open.entry(child).or_insert(0) += 1;
        true
    }

    fn give_back(&self, child: u64) {
        if let Some(n) = self.open.lock().get_mut(&child) {
            *n = n.saturating_sub(1);
        }
    }

    /// Connections open on the whole server.
    pub fn total(&self) -> usize {
        self.open.lock().values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UnixStream, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (UnixStream::from_std(ours).unwrap(), theirs)
    }

    async fn settle(ledger: &Ledger, open: usize) {
        for _ in 0..1000 {
            if ledger.total() == open {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the ledger holds {} places, not {open}", ledger.total());
    }

    #[tokio::test]
    async fn children_share_one_limit_and_a_dead_childs_places_come_back() {
        let ledger = Ledger::new(3);
        let (sup_a, link_a) = pair();
        let (sup_b, link_b) = pair();
        tokio::spawn(ledger.clone().serve_child(1, sup_a));
        let b_served = tokio::spawn(ledger.clone().serve_child(2, sup_b));
        let a = Admission::supervised(100, link_a).unwrap();
        let b = Admission::supervised(100, link_b).unwrap();

        let a1 = a.admit().await.expect("room");
        let _a2 = a.admit().await.expect("room");
        let b1 = b.admit().await.expect("room");
        assert!(
            b.admit().await.is_none(),
            "a fourth place past a limit of 3"
        );
        assert!(
            a.admit().await.is_none(),
            "a fourth place past a limit of 3"
        );
        assert_eq!(ledger.total(), 3);

        // A connection that ends frees its place for any child (once the supervisor has read
        // that it ended: a refusal may lag a closing connection by a moment).
        drop(a1);
        settle(&ledger, 2).await;
        let b2 = b.admit().await.expect("the freed place");
        assert!(a.admit().await.is_none());

        // Child b dies with two connections: both places come back.
        drop((b1, b2));
        drop(b);
        b_served.await.unwrap();
        assert_eq!(ledger.total(), 1);
        let _a3 = a.admit().await.expect("room after b died");
        let _a4 = a.admit().await.expect("room after b died");
        assert!(a.admit().await.is_none());
    }

    #[tokio::test]
    async fn the_local_limit_still_holds_and_a_refusal_takes_no_place() {
        let ledger = Ledger::new(10);
        let (sup, link) = pair();
        tokio::spawn(ledger.clone().serve_child(1, sup));
        let a = Admission::supervised(1, link).unwrap();
        let _p = a.admit().await.expect("room");
        assert!(a.admit().await.is_none(), "past this process's own limit");
        assert_eq!(ledger.total(), 1, "a local refusal asks nobody");
    }

    /// A supervisor that is alive but silent (stopped, wedged): the child gives up after
    /// [`ANSWER_LIMIT`] instead of holding its accept loop, and does not use the link again.
    #[tokio::test(start_paused = true)]
    async fn a_child_whose_supervisor_does_not_answer_refuses_in_bounded_time() {
        let (_silent, link) = pair();
        let a = Admission::supervised(10, link).unwrap();
        let started = tokio::time::Instant::now();
        assert!(a.admit().await.is_none());
        assert!(started.elapsed() >= ANSWER_LIMIT);
        let again = tokio::time::Instant::now();
        assert!(a.admit().await.is_none());
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "the link is not asked again"
        );
    }

    #[tokio::test]
    async fn a_child_whose_supervisor_is_gone_refuses() {
        let (sup, link) = pair();
        drop(sup);
        let a = Admission::supervised(10, link).unwrap();
        assert!(a.admit().await.is_none());
    }

    #[tokio::test]
    async fn a_local_admission_counts_its_places() {
        let a = Admission::local(2);
        let p = a.admit().await.expect("room");
        let _q = a.admit().await.expect("room");
        assert!(a.admit().await.is_none());
        drop(p);
        assert!(a.admit().await.is_some());
    }
}
