//! The wire protocol: requests, replies, error codes and limits.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one
//! object (see `docs/PROTOCOL.md`). This module knows nothing about sockets: it turns a frame's
//! payload into a [`Request`] (or an [`ErrorReply`] that says precisely what was wrong with it)
//! and turns replies back into payload bytes. Framing itself lives in [`crate::connection`].

mod error;
mod reply;
mod request;

pub use error::{ErrorCode, ErrorReply};
pub use reply::{encode_pong, ClientReply, Reply, Timings};
pub use request::{parse_request, Command, Request};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default work size for `compute` without `n`, as in the original Python server.
pub const DEFAULT_N: u64 = 1_000_000;
/// Longest accepted string id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Default largest frame payload, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// A request id, echoed back verbatim: a short string or a non-negative integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

/// Length of the digits at the front of `p` when they are an unsigned integer as JSON writes
/// one: at least one digit, no sign, no leading zero. The hand-written readers (the server's
/// flat request reader, the driver's reply reader) share it.
pub fn json_uint_len(p: &[u8]) -> Option<usize> {
    let n = p.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0 && !(n > 1 && p[0] == b'0')).then_some(n)
}

/// The unsigned integer at the front of `p` (see [`json_uint_len`]) and its length; `None`
/// when there is none or it does not fit a u64.
pub fn json_uint(p: &[u8]) -> Option<(u64, usize)> {
    let n = json_uint_len(p)?;
    let v = p[..n].iter().try_fold(0u64, |v, d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((v, n))
}
