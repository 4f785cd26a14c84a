//! Length-prefixed framing over any async byte stream.
//!
//! The same code reads requests from TCP sockets and job replies from worker pipes. A frame is
//! a 4-byte big-endian length `N` followed by `N` payload bytes. The reader never allocates
//! from a declared length: the buffer grows only with bytes that actually arrive, so a peer
//! that declares 4 GiB and sends nothing costs nothing.

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

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
    max_frame: usize,
    /// When the first byte of the frame now being assembled arrived.
    frame_started: Option<Instant>,
    /// When the last read returned: every frame it completed was fully read then.
    read_at: std::time::Instant,
}

/// Bytes asked for per read: small enough that a stalled giant frame holds little memory,
/// large enough that a burst of pipelined requests is one syscall.
const READ_CHUNK: usize = 16 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_frame,
            frame_started: None,
            read_at: std::time::Instant::now(),
        }
    }

    /// When the frames now buffered (and the one last returned) were fully read: the moment
    /// the read that brought their last bytes returned. One clock read per read, not per frame.
    pub fn read_at(&self) -> std::time::Instant {
        self.read_at
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next frame's payload, `Ok(None)` on a clean close between frames.
    pub async fn read_frame(&mut self, limits: ReadLimits) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            let wait = if self.buf.is_empty() {
                limits
                    .idle
                    .map(|d| (Instant::now() + d, FrameError::Idle(d)))
            } else {
                let started = *self.frame_started.get_or_insert_with(Instant::now);
                limits.frame.map(|d| (started + d, FrameError::Deadline(d)))
            };
            self.buf.reserve(READ_CHUNK.min(self.max_frame + 4));
            let read = self.inner.read_buf(&mut self.buf);
            let n = match wait {
                None => read.await?,
                Some((deadline, err)) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(r) => r?,
                    Err(_) => return Err(err),
                },
            };
            self.read_at = std::time::Instant::now();
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated(self.buf.len()))
                };
            }
            if self.frame_started.is_none() {
                self.frame_started = Some(Instant::now());
            }
        }
    }

    /// The next frame if it is already buffered whole, without reading or waiting: takes it
    /// off the buffer, checking the declared length first. `Ok(None)` means
    /// [`read_frame`](Self::read_frame) has to wait for more bytes.
    pub fn buffered_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let declared = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if declared as u64 > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                declared: declared as u64,
                max: self.max_frame,
            });
        }
        let len = declared as usize;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let frame = self.buf.split_to(len).freeze();
        // The next frame's clock starts when the caller next asks for it (`read_frame`), even
        // if some of its bytes are here already: time the caller spends not reading (the
        // server's in-flight cap) must not count against the peer.
        self.frame_started = None;
        Ok(Some(frame))
    }
}

/// Appends one frame (length prefix and payload) to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends a frame whose payload is produced by `fill`, writing the length prefix afterwards
/// so the payload is encoded once, in place.
pub fn put_frame_with(out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
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
                got.push(f);
            }
            writer.await.unwrap();
            assert_eq!(got, vec![&b"one"[..], b"", b"three three"]);
        }
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
}
