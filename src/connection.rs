//! Length-prefixed framing (SPEC §2): the one place that parses and writes frames.
//!
//! A frame is a 4-byte big-endian length `N` followed by `N` payload bytes. [`peek_frame`] is
//! the parser, with no I/O: every reader is built on it, so the limit check and the meaning of
//! a partial frame are the same everywhere. [`FrameReader`] reads requests from TCP sockets and
//! job replies from worker pipes (async, with deadlines); [`BlockingFrameReader`] reads jobs
//! from a worker's stdin; the load driver calls [`peek_frame`] on its own buffer. Both readers
//! lend each payload in place, borrowed from their buffer until the next call: a frame costs
//! no copy, no allocation and no reference count. Writers
//! append frames with [`put_frame`] and [`put_frame_with`].
//!
//! No reader allocates from a declared length: the limit is checked on the 4-byte header
//! alone, and a buffer grows only with bytes that actually arrive (the blocking reader's is
//! sized once, from the configured limit), so a peer that declares 4 GiB and sends nothing
//! costs nothing.

use bytes::{Buf, BytesMut};
use std::io::Read;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Bytes of the length prefix.
pub const HEADER: usize = 4;

/// A frame whose declared length is over the reader's limit, refused from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversize {
    pub declared: u64,
    pub max: usize,
}

/// The first frame's payload in `buf`, borrowed in place, when `buf` holds it whole; `Ok(None)`
/// when more bytes are needed. The frame takes `HEADER + payload.len()` bytes of `buf`.
///
/// The declared length is checked against `max` before anything else, so an oversize frame is
/// refused as soon as its header is in, without waiting for (or making room for) its body.
pub fn peek_frame(buf: &[u8], max: usize) -> Result<Option<&[u8]>, Oversize> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER>() else {
        return Ok(None);
    };
    let declared = u32::from_be_bytes(*header);
    if declared as u64 > max as u64 {
        return Err(Oversize {
            declared: declared as u64,
            max,
        });
    }
    Ok(rest.get(..declared as usize))
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("declared frame length {declared} exceeds the limit of {max} bytes")]
    TooLarge { declared: u64, max: usize },
    #[error("frame not completed within {0:?} of its first byte")]
    Deadline(Duration),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("peer closed the stream in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<Oversize> for FrameError {
    fn from(Oversize { declared, max }: Oversize) -> Self {
        FrameError::TooLarge { declared, max }
    }
}

/// Limits on how long a peer may take. `None` means wait forever (worker pipes).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Longest silence between frames.
    pub idle: Option<Duration>,
    /// A started frame must be complete this long after its first byte: absolute, so a peer
    /// that trickles one byte at a time cannot hold the connection forever.
    pub frame: Option<Duration>,
}

impl ReadLimits {
    pub const NONE: ReadLimits = ReadLimits {
        idle: None,
        frame: None,
    };
}

/// Reads frames from a byte stream, buffering what arrives.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    /// Bytes at the front of `buf` of the frame last returned (header and payload): lent to
    /// the caller in place, dropped from the buffer at the next call.
    returned: usize,
    max_frame: usize,
    /// When this reader began waiting for the rest of the frame now being assembled (its
    /// first bytes had just arrived).
    frame_started: Option<Instant>,
    /// When the last read returned: every frame it completed was fully read then.
    read_at: crate::clock::Stamp,
}

/// Bytes asked for per read: small enough that a stalled giant frame holds little memory,
/// large enough that a burst of pipelined requests is one syscall.
const READ_CHUNK: usize = 16 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            returned: 0,
            max_frame,
            frame_started: None,
            read_at: crate::clock::Stamp::now(),
        }
    }

    /// When the frames now buffered (and the one last returned) were fully read: the moment
    /// the read that brought their last bytes returned. One clock read per read, not per frame.
    pub fn read_at(&self) -> crate::clock::Stamp {
        self.read_at
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.returned
    }

    /// The stream, given back; bytes still buffered are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Whether [`buffered_frame`](Self::buffered_frame) has something to return without
    /// reading: a whole frame, or a header whose declared length refuses one.
    pub fn ready(&self) -> bool {
        !matches!(
            peek_frame(&self.buf[self.returned..], self.max_frame),
            Ok(None)
        )
    }

    /// Returns the next frame's payload, `Ok(None)` on a clean close between frames.
    pub async fn read_frame(&mut self, limits: ReadLimits) -> Result<Option<&[u8]>, FrameError> {
        if self.wait_for_frame(limits).await? {
            self.buffered_frame()
        } else {
            Ok(None)
        }
    }

    /// Reads until [`ready`](Self::ready): `Ok(true)`, and
    /// [`buffered_frame`](Self::buffered_frame) then returns the frame (or its refusal).
    /// `Ok(false)` on a clean close between frames. The frame returned last is dropped from
    /// the buffer first. Cancel-safe: bytes read before a cancellation stay buffered.
    pub async fn wait_for_frame(&mut self, limits: ReadLimits) -> Result<bool, FrameError> {
        self.release();
        loop {
            if self.ready() {
                return Ok(true);
            }
            let wait = if self.buf.is_empty() {
                limits
                    .idle
                    .map(|d| (Instant::now() + d, FrameError::Idle(d)))
            } else {
                let started = *self.frame_started.get_or_insert_with(Instant::now);
                limits.frame.map(|d| (started + d, FrameError::Deadline(d)))
            };
            self.buf.reserve(READ_CHUNK.min(self.max_frame + HEADER));
            let read = self.inner.read_buf(&mut self.buf);
            let n = match wait {
                None => read.await?,
                Some((deadline, err)) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(r) => r?,
                    Err(_) => return Err(err),
                },
            };
            self.read_at = crate::clock::Stamp::now();
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(false)
                } else {
                    Err(FrameError::Truncated(self.buf.len()))
                };
            }
            // The frame's clock, if these bytes leave one unfinished, starts at the top of the
            // loop, when this reader next waits for the peer (`get_or_insert_with` above): not
            // here, so a read costs one clock read, and time spent on the frames it completed
            // does not count against the peer.
        }
    }

    /// The next frame if it is already buffered whole, without reading or waiting, checking
    /// the declared length first. The payload is lent in place until the next call.
    /// `Ok(None)` means [`read_frame`](Self::read_frame) has to wait for more bytes.
    pub fn buffered_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        self.release();
        let Some(len) = peek_frame(&self.buf, self.max_frame)?.map(<[u8]>::len) else {
            return Ok(None);
        };
        self.returned = HEADER + len;
        // The next frame's clock starts when the caller next asks for it (`wait_for_frame`),
        // even if some of its bytes are here already: time the caller spends not reading
        // (the server's in-flight cap) must not count against the peer.
        self.frame_started = None;
        Ok(Some(&self.buf[HEADER..HEADER + len]))
    }

    /// Drops the frame returned last from the front of the buffer.
    fn release(&mut self) {
        self.buf.advance(std::mem::take(&mut self.returned));
    }
}

/// Reads frames from a blocking reader: the worker's stdin, where a job is all there is to
/// wait for, so there are no deadlines. Frames are returned in place, borrowed from a buffer
/// sized once for the largest allowed frame, so a job costs no allocation and no copy.
pub struct BlockingFrameReader<R> {
    inner: R,
    /// Always fully initialized; `buf[start..end]` holds bytes not yet returned as frames.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of the frame last returned, dropped from the buffer at the next call.
    returned: usize,
    max_frame: usize,
}

impl<R: Read> BlockingFrameReader<R> {
    /// The buffer holds a whole `max_frame` frame, so this reader is for small limits (pipes).
    pub fn new(inner: R, max_frame: usize) -> Self {
        BlockingFrameReader {
            inner,
            buf: vec![0; READ_CHUNK.max(HEADER + max_frame)].into_boxed_slice(),
            start: 0,
            end: 0,
            returned: 0,
            max_frame,
        }
    }

    /// Returns the next frame's payload, `Ok(None)` on a clean close between frames.
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        self.start += std::mem::take(&mut self.returned);
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(len) = peek_frame(pending, self.max_frame)?.map(<[u8]>::len) {
                let payload = self.start + HEADER;
                self.returned = HEADER + len;
                return Ok(Some(&self.buf[payload..payload + len]));
            }
            // Move the partial frame (a few bytes, usually none) to the front, so every read
            // has the whole buffer's room: as few reads as a `BufReader` would make.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            let n = match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return match self.end {
                    0 => Ok(None),
                    partial => Err(FrameError::Truncated(partial)),
                };
            }
            self.end += n;
        }
    }
}

/// Appends one frame (length prefix and payload) to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    put_frame_with(out, |o| o.extend_from_slice(payload));
}

/// Appends a frame whose payload is produced by `fill`, writing the length prefix afterwards
/// so the payload is encoded once, in place.
pub fn put_frame_with(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER]);
    fill(out);
    let len = (out.len() - at - HEADER) as u32;
    out[at..at + HEADER].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_pipelined_frames_split_at_any_byte() {
        let mut wire = Vec::new();
        for p in [&b"one"[..], b"", b"three three"] {
            put_frame(&mut wire, p);
        }
        for chunk in 1..wire.len() {
            let (mut tx, rx) = tokio::io::duplex(64);
            let bytes = wire.clone();
            let writer = tokio::spawn(async move {
                for c in bytes.chunks(chunk) {
                    tx.write_all(c).await.unwrap();
                }
            });
            let mut r = FrameReader::new(rx, 1024);
            let mut got = Vec::new();
            while let Some(f) = r.read_frame(ReadLimits::NONE).await.unwrap() {
                got.push(f.to_vec());
            }
            writer.await.unwrap();
            assert_eq!(got, vec![&b"one"[..], b"", b"three three"]);
        }
    }

    #[tokio::test]
    async fn a_lent_frame_leaves_the_buffer_at_the_next_call_and_not_before() {
        let mut wire = Vec::new();
        put_frame(&mut wire, b"ab");
        put_frame(&mut wire, b"cde");
        wire.extend_from_slice(&[0, 0, 0, 9, b'f']);
        let mut r = FrameReader::new(wire.as_slice(), 1024);
        assert!(!r.ready(), "nothing read yet");
        assert!(r.wait_for_frame(ReadLimits::NONE).await.unwrap());
        assert!(r.ready());
        assert_eq!(r.buffered(), wire.len());
        assert_eq!(r.buffered_frame().unwrap(), Some(&b"ab"[..]));
        // The lent frame no longer counts as buffered, and the next one is whole.
        assert_eq!(r.buffered(), wire.len() - 6);
        assert!(r.ready());
        assert_eq!(r.buffered_frame().unwrap(), Some(&b"cde"[..]));
        // Only the start of the third frame is left: not ready, and nothing to take.
        assert!(!r.ready());
        assert_eq!(r.buffered(), 5);
        assert_eq!(r.buffered_frame().unwrap(), None);
        assert!(matches!(
            r.read_frame(ReadLimits::NONE).await,
            Err(FrameError::Truncated(5))
        ));
    }

    #[tokio::test]
    async fn an_oversize_header_is_ready_to_be_refused() {
        let mut wire = vec![0, 0, 0, 1, b'a'];
        wire.extend_from_slice(&2000u32.to_be_bytes());
        let mut r = FrameReader::new(wire.as_slice(), 1024);
        assert_eq!(
            r.read_frame(ReadLimits::NONE).await.unwrap(),
            Some(&b"a"[..])
        );
        assert!(
            r.ready(),
            "an oversize header needs no more bytes to be refused"
        );
        assert!(matches!(
            r.buffered_frame(),
            Err(FrameError::TooLarge {
                declared: 2000,
                max: 1024
            })
        ));
    }

    #[tokio::test]
    async fn refuses_oversize_length_before_reading_the_body() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tx.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut r = FrameReader::new(rx, 1024);
        let err = r.read_frame(ReadLimits::NONE).await.unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { declared, .. } if declared == u32::MAX as u64)
        );
        assert!(
            r.buf.capacity() < 64 * 1024,
            "no allocation from the declared length"
        );
    }

    #[tokio::test]
    async fn close_mid_frame_is_an_error_and_between_frames_is_not() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tx.write_all(&[0, 0, 0, 5, b'a']).await.unwrap();
        drop(tx);
        let mut r = FrameReader::new(rx, 1024);
        assert!(matches!(
            r.read_frame(ReadLimits::NONE).await,
            Err(FrameError::Truncated(5))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn trickled_frame_hits_the_absolute_deadline() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let limits = ReadLimits {
            idle: Some(Duration::from_secs(100)),
            frame: Some(Duration::from_secs(3)),
        };
        let trickle = tokio::spawn(async move {
            for b in [0u8, 0, 0, 200, 1, 2, 3, 4, 5, 6, 7] {
                if tx.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut r = FrameReader::new(rx, 1024);
        let start = Instant::now();
        let err = r.read_frame(limits).await.unwrap_err();
        assert!(matches!(err, FrameError::Deadline(_)), "{err}");
        assert!(start.elapsed() <= Duration::from_secs(4));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_caller_spends_not_reading_does_not_count_against_the_next_frame() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let limits = ReadLimits {
            idle: None,
            frame: Some(Duration::from_secs(3)),
        };
        // One whole frame and the start of the next arrive together.
        tx.write_all(&[0, 0, 0, 1, b'a', 0, 0, 0, 4, b'b'])
            .await
            .unwrap();
        let mut r = FrameReader::new(rx, 1024);
        assert_eq!(r.read_frame(limits).await.unwrap().unwrap(), &b"a"[..]);
        // The caller is busy (at its in-flight cap) far longer than the frame deadline...
        tokio::time::sleep(Duration::from_secs(60)).await;
        // ...then the rest of the frame comes promptly once it reads again.
        let rest = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.write_all(b"cde").await.unwrap();
            tx
        });
        assert_eq!(r.read_frame(limits).await.unwrap().unwrap(), &b"bcde"[..]);
        drop(rest.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn silence_between_frames_hits_the_idle_timeout() {
        let (_tx, rx) = tokio::io::duplex(64);
        let limits = ReadLimits {
            idle: Some(Duration::from_secs(5)),
            frame: Some(Duration::from_secs(1)),
        };
        let mut r = FrameReader::new(rx, 1024);
        assert!(matches!(
            r.read_frame(limits).await,
            Err(FrameError::Idle(_))
        ));
    }

    #[test]
    fn put_frame_with_writes_the_length_after_the_payload() {
        let mut out = vec![9];
        put_frame_with(&mut out, |o| o.extend_from_slice(b"hello"));
        assert_eq!(out, [9, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    }

    #[test]
    fn peek_refuses_an_oversize_header_alone_and_waits_for_a_short_body() {
        assert_eq!(peek_frame(&[0, 0, 1], 4), Ok(None));
        assert_eq!(
            peek_frame(&[0, 0, 0, 5], 4),
            Err(Oversize {
                declared: 5,
                max: 4
            })
        );
        assert_eq!(peek_frame(&[0, 0, 0, 3, b'a', b'b'], 4), Ok(None));
        assert_eq!(
            peek_frame(&[0, 0, 0, 2, b'a', b'b', 0], 4),
            Ok(Some(&b"ab"[..]))
        );
    }

    /// A blocking reader that hands out at most `chunk` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn blocking_reader_reads_pipelined_frames_split_at_any_byte() {
        let payloads = [&b"one"[..], b"", &[7; 40]];
        let mut one_round = Vec::new();
        for p in payloads {
            put_frame(&mut one_round, p);
        }
        // Enough rounds that frames straddle the buffer's end, whatever the split.
        let rounds = READ_CHUNK / one_round.len() + 2;
        let wire = one_round.repeat(rounds);
        for chunk in [1, 2, 3, 5, 7, 64, wire.len()] {
            let mut r = BlockingFrameReader::new(Trickle { data: &wire, chunk }, 64);
            let mut got = 0;
            while let Some(f) = r.read_frame().unwrap() {
                assert_eq!(f, payloads[got % payloads.len()], "chunk {chunk}");
                got += 1;
            }
            assert_eq!(got, rounds * payloads.len(), "chunk {chunk}");
        }
    }

    #[test]
    fn blocking_reader_refuses_oversize_and_truncated_frames() {
        let data = u32::MAX.to_be_bytes();
        let mut r = BlockingFrameReader::new(
            Trickle {
                data: &data,
                chunk: 1,
            },
            64,
        );
        assert!(matches!(
            r.read_frame(),
            Err(FrameError::TooLarge { declared, max: 64 }) if declared == u32::MAX as u64
        ));
        for cut in 1..6 {
            let data = &[0, 0, 0, 2, b'a', b'b'][..cut];
            let mut r = BlockingFrameReader::new(Trickle { data, chunk: 1 }, 64);
            assert!(
                matches!(r.read_frame(), Err(FrameError::Truncated(n)) if n == cut),
                "cut at {cut}"
            );
        }
    }
}
