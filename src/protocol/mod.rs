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
    is_json_uint(p, n).then_some(n)
}

/// Whether the `n` digits at the front of `p` are an unsigned integer as JSON writes one: at
/// least one digit, and no leading zero.
fn is_json_uint(p: &[u8], n: usize) -> bool {
    n > 0 && !(n > 1 && p[0] == b'0')
}

/// The unsigned integer at the front of `p` (see [`json_uint_len`]) and its length; `None`
/// when there is none or it does not fit a u64.
///
/// Both hand-written readers take every request id through here, and the driver's ids have 19
/// or 20 digits (`load::ids`), so the digits are read eight at a time where eight are there
/// (about 11 ns against 28 ns digit by digit for a 20-digit id, in a loop that alternated the
/// two; `lexical-core` took 17 ns). Any 19 digits fit a u64 (10^19 - 1 < 2^64): only a 20th is
/// checked for overflow.
pub fn json_uint(p: &[u8]) -> Option<(u64, usize)> {
    let (mut v, mut n) = (0u64, 0);
    // At most two blocks: 16 digits are below 10^16, and the digit loop checks from the 20th.
    while n < 16 {
        let Some(block) = p.get(n..n + 8).and_then(eight_digits) else {
            break;
        };
        v = v * 100_000_000 + block;
        n += 8;
    }
    while let Some(d) = p.get(n).filter(|b| b.is_ascii_digit()) {
        let d = u64::from(d - b'0');
        v = if n < 19 {
            v * 10 + d
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
        n += 1;
    }
    is_json_uint(p, n).then_some((v, n))
}

/// The value of eight ASCII digits, or `None` if any of the bytes is not one. The usual SWAR
/// reduction: pairs, then fours, then the eight, in three multiplies.
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    let d = word.wrapping_sub(0x3030_3030_3030_3030);
    // A byte below '0' wraps to 0x80 or more; one above '9' reaches 0x80 once 0x76 is added
    // (no byte carries into the next unless its own top bit is already set).
    if (d | d.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // Little-endian: the first digit is the lowest byte. Each 16-bit lane gets 10 * first +
    // second, then each 32-bit lane its four digits, then the whole its eight.
    let pairs = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let fours = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((fours.wrapping_mul(10_000) + (fours >> 32)) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `json_uint` must give: the digits at the front, as Rust parses them, unless JSON
    /// refuses them (a leading zero) or they overflow.
    fn reference(p: &[u8]) -> Option<(u64, usize)> {
        let n = p.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || (n > 1 && p[0] == b'0') {
            return None;
        }
        let v = std::str::from_utf8(&p[..n]).ok()?.parse::<u64>().ok()?;
        Some((v, n))
    }

    #[test]
    fn unsigned_integers_read_to_the_last_digit_a_u64_holds() {
        for (text, want) in [
            ("0", Some((0, 1))),
            ("7,", Some((7, 1))),
            (
                "9999999999999999999}",
                Some((9_999_999_999_999_999_999, 19)),
            ),
            (
                "10000000000000000000",
                Some((10_000_000_000_000_000_000, 20)),
            ),
            ("18446744073709551615", Some((u64::MAX, 20))),
            ("18446744073709551616", None),
            ("18446744073709551620", None),
            ("99999999999999999999", None),
            ("100000000000000000000", None),
            ("01", None),
            ("", None),
            ("-1", None),
        ] {
            assert_eq!(json_uint(text.as_bytes()), want, "{text}");
            assert_eq!(reference(text.as_bytes()), want, "the reference on {text}");
        }
    }

    #[test]
    fn eight_digits_take_only_digits() {
        assert_eq!(eight_digits(b"12345678"), Some(12_345_678));
        assert_eq!(eight_digits(b"00000000"), Some(0));
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        // Every byte that is not a digit, in every position, refuses the block.
        for at in 0..8 {
            for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
                let mut block = *b"99999999";
                block[at] = b;
                assert_eq!(eight_digits(&block), None, "byte {b:#x} at {at}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn eight_digits_read_as_rust_parses_them(v in 0u64..100_000_000) {
            let text = format!("{v:08}");
            proptest::prop_assert_eq!(eight_digits(text.as_bytes()), Some(v));
        }

        #[test]
        fn unsigned_integers_read_as_rust_parses_them(digits in "[0-9]{1,22}", after in "[,}.e ]?") {
            let text = format!("{digits}{after}");
            proptest::prop_assert_eq!(json_uint(text.as_bytes()), reference(text.as_bytes()));
        }

        #[test]
        fn every_u64_reads_back(v: u64) {
            let text = v.to_string();
            proptest::prop_assert_eq!(json_uint(text.as_bytes()), Some((v, text.len())));
        }
    }
}
