//! An anonymous private memory mapping owned by one job, straight from the kernel.
//!
//! `fault`, `tlb`, `mprotect` and `munmap` need page-table work on every step, which the
//! allocator would hide: glibc serves large blocks from a cache of earlier mappings once its
//! adaptive threshold rises.
//!
//! Invariants the safe API keeps: the mapping is live from `new` until `drop`, owned by one
//! job, and writable whenever a `&mut Mapping` is usable — [`Mapping::read_only`] borrows it
//! mutably for as long as the pages are read-only, so no safe call can store to them.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, mmap_anonymous, mprotect, munmap, MapFlags, MmapAdvise, ProtFlags};

/// The system page size in bytes.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// `pages` pages of fresh zeroed memory, unmapped on drop (also when a job unwinds).
pub(crate) struct Mapping {
    base: NonNull<libc::c_void>,
    len: usize,
    page: usize,
}

impl Mapping {
    /// Map `pages` pages readable and writable; `what` names the kernel in the panic message.
    ///
    /// Panics if the size overflows or the kernel refuses (`ENOMEM`, an address-space limit):
    /// a job has no other way to fail, and the backends report a panic as `job_panicked`.
    pub(crate) fn new(what: &str, pages: u64) -> Mapping {
        let page = page_size();
        let len = usize::try_from(pages)
            .ok()
            .and_then(|p| p.checked_mul(page))
            .and_then(NonZeroUsize::new)
            .unwrap_or_else(|| panic!("{what} kernel: cannot map {pages} pages"));
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing aliases
        // nothing; it is unmapped exactly once, in Drop.
        let base = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .unwrap_or_else(|e| panic!("{what} kernel: mmap of {pages} pages failed: {e}"));
        Mapping {
            base,
            len: len.get(),
            page,
        }
    }

    /// Words (u64) per page.
    pub(crate) fn words_per_page(&self) -> usize {
        self.page / 8
    }

    fn word_ptr(&self, page: usize, word: usize) -> *mut u64 {
        assert!(word < self.words_per_page() && (page + 1) * self.page <= self.len);
        // In bounds by the assertion above; the base is page-aligned, so the word is aligned.
        self.base
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(page * self.page)
            .cast::<u64>()
            .wrapping_add(word)
    }

    /// Store `value` in word `word` of page `page`. Volatile, so the store (and the page fault
    /// it causes) happens even though nothing in Rust's view depends on it. `&mut self`: while
    /// a [`ReadOnly`] guard holds the mapping no store can be made, so none faults.
    #[inline]
    pub(crate) fn write(&mut self, page: usize, word: usize, value: u64) {
        // SAFETY: word_ptr checks bounds and alignment; the mapping is live and owned by this
        // job alone, and writable: the only read-only window is a `ReadOnly`, which holds the
        // `&mut` this call needs.
        unsafe { self.word_ptr(page, word).write_volatile(value) }
    }

    /// Load word `word` of page `page`, volatile for the same reason as [`Mapping::write`].
    #[inline]
    pub(crate) fn read(&self, page: usize, word: usize) -> u64 {
        // SAFETY: as in `write`.
        unsafe { self.word_ptr(page, word).read_volatile() }
    }

    /// Drop the contents of the whole mapping (`MADV_DONTNEED`): the next touch faults in a
    /// fresh zero page, and the kernel must flush this page from every CPU's TLB that may hold
    /// it, i.e. send an IPI to each core running another thread of this process.
    pub(crate) fn discard(&self, what: &str) {
        // SAFETY: the range is exactly this private anonymous mapping, whose contents nobody
        // else references; reading it afterwards yields zeros.
        unsafe { madvise(self.base, self.len, MmapAdvise::MADV_DONTNEED) }
            .unwrap_or_else(|e| panic!("{what} kernel: madvise(MADV_DONTNEED) failed: {e}"));
    }

    /// Change the whole mapping's protection; `what` names the kernel in the panic message.
    fn protect(&self, what: &str, prot: ProtFlags) {
        // SAFETY: the range is exactly this private anonymous mapping. Dropping write permission
        // is sound because the caller (`read_only`) holds `&mut self`, so no `write` can run
        // until the permission is restored.
        unsafe { mprotect(self.base, self.len, prot) }
            .unwrap_or_else(|e| panic!("{what} kernel: mprotect({prot:?}) failed: {e}"));
    }

    /// Make the mapping read-only until the returned guard drops, which makes it read-write
    /// again. Removing write permission from a present page makes the kernel flush its
    /// translation from every CPU that may cache it: an IPI to each core running another
    /// thread of this process, as `discard` does, but the page and its contents stay.
    pub(crate) fn read_only<'a>(&'a mut self, what: &'a str) -> ReadOnly<'a> {
        self.protect(what, ProtFlags::PROT_READ);
        ReadOnly { map: self, what }
    }
}

/// A [`Mapping`] made read-only by [`Mapping::read_only`]; it can be read, not written, and is
/// made writable again on drop.
pub(crate) struct ReadOnly<'a> {
    map: &'a mut Mapping,
    what: &'a str,
}

impl ReadOnly<'_> {
    /// Load word `word` of page `page`; see [`Mapping::read`].
    #[inline]
    pub(crate) fn read(&self, page: usize, word: usize) -> u64 {
        self.map.read(page, word)
    }
}

impl Drop for ReadOnly<'_> {
    /// Restoring the permission the mapping was created with cannot fail for a whole private
    /// mapping short of the kernel running out of memory; if it does, the panic (an abort if
    /// already unwinding) is better than a later store faulting.
    fn drop(&mut self) {
        self.map
            .protect(self.what, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned, unmapped once. munmap of a valid
        // mapping cannot fail, and a destructor has no one to report to.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}
