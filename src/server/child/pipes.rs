//! The child's pipes: each read on a thread of its own so that the child never blocks
//! writing, and the end of its stderr kept (or found in its file) for error messages.

use anyhow::Context;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long an error message waits for the rest of a dead child's stderr.
pub(super) const SETTLE: Duration = Duration::from_secs(1);
/// How much of the child's stderr is kept for error messages, in bytes.
const TAIL: usize = 4096;

/// Reads `pipe` on a thread of its own: first `first` (which may stop early), then the rest
/// into nothing, so the child never blocks writing to it.
pub(super) fn drain<R: Read + Send + 'static>(
    name: &str,
    pipe: R,
    first: impl FnOnce(&mut BufReader<R>) + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(format!("child-{name}"))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            first(&mut reader);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        })
        .with_context(|| format!("cannot start a thread to read a child's {name}"))?;
    Ok(())
}

/// Where the child's stderr went, and how to read its end back.
pub(super) enum StderrLog {
    Captured(Arc<Tail>),
    Inherited,
    File(PathBuf),
}

impl StderrLog {
    /// The end of the child's stderr, waiting up to `settle` for it to be closed (the rest of
    /// a dying child's message may still be in the pipe).
    pub(super) fn tail(&self, settle: Duration) -> Option<String> {
        match self {
            StderrLog::Captured(tail) => Some(tail.read(settle)),
            StderrLog::Inherited => None,
            StderrLog::File(path) => {
                let bytes = std::fs::read(path).unwrap_or_default();
                let from = bytes.len().saturating_sub(TAIL);
                Some(String::from_utf8_lossy(&bytes[from..]).into_owned())
            }
        }
    }

    /// Its stderr for an error message, once it has settled.
    pub(super) fn quote(&self) -> String {
        match self.tail(SETTLE) {
            None => "its stderr went to this process's stderr".to_string(),
            Some(t) if t.trim().is_empty() => "nothing on its stderr".to_string(),
            Some(t) => format!("its stderr: {}", t.trim()),
        }
    }
}

/// The end of a captured stderr, and whether the pipe has closed.
#[derive(Default)]
pub(super) struct Tail {
    text: Mutex<(String, bool)>,
    closed: Condvar,
}

impl Tail {
    pub(super) fn collect(&self, reader: &mut impl Read) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
            let s = &mut text.0;
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
            if s.len() > 2 * TAIL {
                let cut = s.len() - TAIL;
                let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                s.drain(..cut);
            }
        }
        self.text.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.closed.notify_all();
    }

    fn read(&self, settle: Duration) -> String {
        let text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        let (text, _) = self
            .closed
            .wait_timeout_while(text, settle, |(_, closed)| !*closed)
            .unwrap_or_else(|e| e.into_inner());
        text.0.clone()
    }
}
