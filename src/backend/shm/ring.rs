//! Two single-producer single-consumer rings in one shared mapping (a memfd), the only unsafe
//! code of the shared-memory transport.
//!
//! # Layout
//!
//! One mapping of `LAYOUT_HEAD + 2 * cap * SLOT` bytes: a header (magic, capacity), then the
//! job ring's and the reply ring's control words, each on its own 64-byte line, then the job
//! slots and the reply slots. A slot is `seq: u64 | len: u32 | bytes[len]`, `len ≤ PAYLOAD`.
//!
//! # Invariants
//!
//! - **Who writes what.** A ring's `tail` is written only by its producer, `head` only by its
//!   consumer; a slot only by the producer, and only while `tail - head < cap` says it is free.
//!   Each side keeps its own index in a local field and only *stores* it to the mapping: a peer
//!   that scribbles over it cannot move this side's position. The producer also keeps the
//!   consumer's `head` as it last read it and reads it again only when that reading says the
//!   ring is full: heads only grow, so a stale reading can only make the ring look fuller than
//!   it is, and a push into a ring with room touches no line the consumer writes but the slot.
//! - **Ordering.** The producer fills the slot with plain (volatile) writes, then stores
//!   `tail + 1` (SeqCst, which includes Release); the consumer loads `tail` (Acquire) before
//!   reading the slot, and stores `head + 1` (Release) after copying it out, so the producer
//!   never overwrites a slot still being read.
//! - **Sleeping.** A consumer about to sleep stores `sleeping = 1` (SeqCst) and then re-reads
//!   `tail` (SeqCst); a producer stores `tail` (SeqCst) and then reads `sleeping` (SeqCst). In the
//!   single total order of SeqCst operations either the consumer sees the new tail (and does not
//!   sleep) or the producer sees the flag (and wakes it): no lost wake-up. The wake-up itself is
//!   an eventfd, whose counter keeps a wake that arrives before the consumer blocks.
//! - **Torn or corrupt slots.** A slot is only read after its tail was published, so an honest
//!   peer never shows a torn slot. A peer that dies mid-write never published the tail: the
//!   half-written slot is never read. A peer that writes garbage (a bug, or memory corruption
//!   in the worker) is caught by the checks on what it published: `tail - head > cap`, a head
//!   that moved backwards, a `seq` that is not the slot's index, or a `len` over [`PAYLOAD`] are
//!   [`Corrupt`], and the server treats that worker as crashed. (The producer checks the head
//!   when it reads it, that is, when its last reading says the ring is full.) The bytes are
//!   copied out before they are decoded, so a peer writing while we read can only give us wrong
//!   bytes, never an out-of-bounds access.
//!
//! The protocol is checked exhaustively (every interleaving of a producer and a sleeping
//! consumer) in the tests below; loom does not fit this crate, because `--cfg loom` is global
//! and tokio's own `cfg(loom)` code then fails to build.

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes per slot, header included.
pub const SLOT: usize = 512;
/// Largest message in one slot.
pub const PAYLOAD: usize = SLOT - 12;
const MAGIC: u64 = 0x7468_6372_7368_6d31; // "thcrshm1"
const LINE: usize = 64;
/// Header line, then three control lines per ring (tail, head, sleeping).
const LAYOUT_HEAD: usize = LINE * 7;

/// What the peer published makes no sense: treat it as a crashed worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

/// Which of the two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Server → worker.
    Jobs,
    /// Worker → server.
    Replies,
}

/// A shared mapping holding both rings. Unmapped when the last handle goes.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    cap: u64,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through atomics or
// through slot copies whose exclusivity the ring indices guarantee (see the module docs).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

fn size_for(cap: usize) -> usize {
    LAYOUT_HEAD + 2 * cap * SLOT
}

impl Mapping {
    /// A fresh memfd holding two empty rings of `cap` slots each (a power of two), mapped
    /// here; the fd is what the worker maps.
    pub fn create(cap: usize) -> std::io::Result<(Arc<Mapping>, OwnedFd)> {
        if !cap.is_power_of_two() {
            return Err(std::io::Error::other(
                "ring capacity must be a power of two",
            ));
        }
        let fd = nix::sys::memfd::memfd_create(
            c"threadcenter-shm",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )?;
        nix::unistd::ftruncate(&fd, size_for(cap) as i64)?;
        let map = Self::map(&fd, size_for(cap), cap as u64)?;
        // Fresh memfd pages are zero: indices and flags start at 0. Publish the header last.
        map.word(0).store(cap as u64, Ordering::Relaxed);
        map.word(8).store(MAGIC, Ordering::Release);
        Ok((Arc::new(map), fd))
    }

    /// Maps rings another process created, checking the header against the file's size.
    pub fn open(fd: &OwnedFd) -> std::io::Result<Arc<Mapping>> {
        let size = nix::sys::stat::fstat(fd.as_raw())?.st_size as usize;
        if size < LAYOUT_HEAD {
            return Err(std::io::Error::other("shared ring file too small"));
        }
        let mut probe = Self::map(fd, size, 0)?;
        let cap = probe.word(0).load(Ordering::Relaxed);
        let magic = probe.word(8).load(Ordering::Acquire);
        if magic != MAGIC || !cap.is_power_of_two() || size_for(cap as usize) != size {
            return Err(std::io::Error::other("shared ring header does not match"));
        }
        probe.cap = cap;
        Ok(Arc::new(probe))
    }

    fn map(fd: &OwnedFd, len: usize, cap: u64) -> std::io::Result<Mapping> {
        let size = NonZeroUsize::new(len).ok_or_else(|| std::io::Error::other("empty ring"))?;
        // SAFETY: a fresh shared mapping of a file we hold; nothing else in this process
        // aliases it, and it lives until `Drop` unmaps it.
        let ptr = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )?
        };
        Ok(Mapping {
            base: ptr.cast(),
            len,
            cap,
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The u64 at byte `off` of the header or control area (always 8-aligned, in bounds).
    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= LAYOUT_HEAD);
        // SAFETY: in bounds and aligned (the mapping is page-aligned); AtomicU64 has the
        // layout of u64, and the memory is only ever accessed atomically.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU64) }
    }

    fn control(&self, which: Which, line: usize) -> usize {
        let ring = match which {
            Which::Jobs => 0,
            Which::Replies => 1,
        };
        LINE * (1 + 3 * ring + line)
    }

    fn tail(&self, w: Which) -> &AtomicU64 {
        self.word(self.control(w, 0))
    }

    fn head(&self, w: Which) -> &AtomicU64 {
        self.word(self.control(w, 1))
    }

    fn sleeping(&self, w: Which) -> &AtomicU32 {
        let off = self.control(w, 2);
        // SAFETY: as in `word`, for a u32 at an 8-aligned offset.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) }
    }

    /// Start of slot `index % cap` of ring `w`.
    fn slot(&self, w: Which, index: u64) -> *mut u8 {
        let ring = match w {
            Which::Jobs => 0,
            Which::Replies => 1,
        };
        let at = LAYOUT_HEAD + (ring * self.cap as usize + (index % self.cap) as usize) * SLOT;
        debug_assert!(at + SLOT <= self.len);
        // SAFETY: `at + SLOT <= len` by construction of the layout.
        unsafe { self.base.as_ptr().add(at) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length; no reference into it
        // outlives `self` (every accessor borrows `self`).
        let _ = unsafe { munmap(self.base.cast(), self.len) };
    }
}

trait RawFdExt {
    fn as_raw(&self) -> std::os::fd::RawFd;
}

impl RawFdExt for OwnedFd {
    fn as_raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// No free slot; nothing was written.
    Full,
    /// Published; the consumer is awake.
    Sent,
    /// Published, and the consumer sleeps: the caller must wake it.
    SentWake,
}

/// The writing end of one ring.
pub struct Producer {
    map: Arc<Mapping>,
    which: Which,
    tail: u64,
    /// The consumer's `head` as last read (with Acquire): every slot before it is free.
    head: u64,
}

/// The reading end of one ring.
pub struct Consumer {
    map: Arc<Mapping>,
    which: Which,
    head: u64,
}

impl Producer {
    pub fn new(map: Arc<Mapping>, which: Which) -> Producer {
        Producer {
            map,
            which,
            tail: 0,
            head: 0,
        }
    }

    /// Publishes `msg` (at most [`PAYLOAD`] bytes), or says the ring is full.
    pub fn push(&mut self, msg: &[u8]) -> Result<Push, Corrupt> {
        assert!(msg.len() <= PAYLOAD, "message larger than a slot");
        let m = &*self.map;
        if self.tail.wrapping_sub(self.head) == m.cap {
            let head = m.head(self.which).load(Ordering::Acquire);
            if self.tail.wrapping_sub(head) > m.cap || head.wrapping_sub(self.head) > m.cap {
                return Err(Corrupt(format!(
                    "ring head {head} is not between the last one read, {}, and tail {}",
                    self.head, self.tail
                )));
            }
            self.head = head;
            if self.tail.wrapping_sub(head) == m.cap {
                return Ok(Push::Full);
            }
        }
        let slot = m.slot(self.which, self.tail);
        // SAFETY: the slot is free (`tail - head < cap` for a head the consumer stored after
        // copying the slot out, which our Acquire load of it saw; heads only grow, so the
        // slot stays free); it is SLOT bytes long and PAYLOAD + 12 = SLOT.
        unsafe {
            std::ptr::write_volatile(slot as *mut [u8; 8], self.tail.to_le_bytes());
            std::ptr::write_volatile(
                slot.add(8) as *mut [u8; 4],
                (msg.len() as u32).to_le_bytes(),
            );
            std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(12), msg.len());
        }
        self.tail += 1;
        m.tail(self.which).store(self.tail, Ordering::SeqCst);
        let sleeping = m.sleeping(self.which);
        if sleeping.load(Ordering::SeqCst) == 1 && sleeping.swap(0, Ordering::SeqCst) == 1 {
            Ok(Push::SentWake)
        } else {
            Ok(Push::Sent)
        }
    }
}

impl Consumer {
    pub fn new(map: Arc<Mapping>, which: Which) -> Consumer {
        Consumer {
            map,
            which,
            head: 0,
        }
    }

    /// Copies the next message into `out` (cleared first). `Ok(false)`: the ring is empty.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> Result<bool, Corrupt> {
        let m = &*self.map;
        let tail = m.tail(self.which).load(Ordering::Acquire);
        let ready = tail.wrapping_sub(self.head);
        if ready == 0 {
            return Ok(false);
        }
        if ready > m.cap {
            return Err(Corrupt(format!(
                "ring tail {tail} beyond head {} + capacity",
                self.head
            )));
        }
        let slot = m.slot(self.which, self.head);
        // SAFETY: the slot was published (Acquire load of tail above) and the producer does not
        // touch it again until our head store below; a misbehaving producer can only make the
        // bytes wrong, which the checks below catch. The header is read once, and only the
        // `len` it gave, checked against PAYLOAD, is copied: SLOT = 12 + PAYLOAD bytes.
        let (seq, len) = unsafe {
            (
                u64::from_le_bytes(std::ptr::read_volatile(slot as *const [u8; 8])),
                u32::from_le_bytes(std::ptr::read_volatile(slot.add(8) as *const [u8; 4])) as usize,
            )
        };
        if seq != self.head || len > PAYLOAD {
            return Err(Corrupt(format!(
                "slot {} holds sequence {seq} and length {len}",
                self.head
            )));
        }
        out.clear();
        out.reserve(len);
        // SAFETY: as above; `out` has room for `len` bytes, all of which the copy initializes.
        unsafe {
            std::ptr::copy_nonoverlapping(slot.add(12), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        self.head += 1;
        m.head(self.which).store(self.head, Ordering::Release);
        Ok(true)
    }

    /// Says this side is about to sleep. `false`: a message arrived meanwhile, do not sleep
    /// (the flag is withdrawn). After `true`, the producer's next push asks for a wake-up.
    pub fn prepare_sleep(&self) -> bool {
        let m = &*self.map;
        m.sleeping(self.which).store(1, Ordering::SeqCst);
        if m.tail(self.which).load(Ordering::SeqCst) != self.head {
            m.sleeping(self.which).store(0, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Withdraws the sleep flag after waking (a producer that saw it has cleared it already).
    pub fn woke(&self) {
        self.map.sleeping(self.which).store(0, Ordering::SeqCst);
    }
}

/// Registers an eventfd with the tokio reactor, for readiness only.
pub fn register_readable(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the `AsyncFd` owns the `OwnedFd`, so the descriptor stays open and the same
    // for the `AsyncFd`'s whole life, and `as_raw_fd` always returns that one descriptor.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(std::io::Error::from)
}

/// Receives the file descriptors a peer sent with `SCM_RIGHTS` (exactly `n` of them, with
/// one byte of payload) on the Unix socket `sock`.
pub fn receive_fds(sock: std::os::fd::BorrowedFd<'_>, n: usize) -> std::io::Result<Vec<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel has just installed these descriptors in our table for us;
            // nothing else in this process knows them, so each gets exactly one owner.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if fds.len() != n {
        return Err(std::io::Error::other(format!(
            "expected {n} descriptors from the server, got {}",
            fds.len()
        )));
    }
    Ok(fds)
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
