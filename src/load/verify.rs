//! Requests out, replies checked: the driver's side of the wire protocol.
//!
//! Every request is one of a few fixed shapes that differ only in the id, so each shape is
//! encoded once into a template and a request costs a few byte copies. Every reply is parsed
//! with the lenient [`ClientReply`] (the original Python server echoes ids as strings and sends
//! no timings) and checked: compute results against [`Kernel::expected`] (user kernels against
//! the first result seen, [`super::consistency`]), pongs for their flags.

use super::spec::{Cmd, LoadSpec};
use crate::connection::put_frame_with;
use crate::kernel::Kernel;
use crate::protocol::{ClientReply, ErrorCode, Timings};
use serde_json::Value;

/// Largest reply the driver accepts, in bytes. Real replies are under 200 bytes; anything
/// near this is a broken or hostile server, and the declared length is checked against it
/// before a single byte is buffered for it.
pub const MAX_REPLY: usize = 1 << 20;

/// Error kinds the driver itself detects (server error codes are counted by their own names).
pub mod kind {
    /// A result that differs from the kernel's expected value.
    pub const MISMATCH: &str = "mismatch";
    /// No reply within the timeout.
    pub const TIMEOUT: &str = "timeout";
    /// The connection failed (refused, reset, closed) with the request in flight.
    pub const CONNECTION: &str = "connection";
    /// A reply that breaks the protocol: oversize frame, not JSON, wrong shape.
    pub const BAD_REPLY: &str = "bad_reply";
    /// A reply whose id is not one this connection has in flight (or a second reply).
    pub const UNMATCHED_ID: &str = "unmatched_id";
    /// A connection used up its range of ids and stopped sending (see `load::ids`).
    pub const IDS_EXHAUSTED: &str = "ids_exhausted";
    /// An error reply with a code outside the contract's list.
    pub const UNKNOWN_ERROR: &str = "unknown_error";
}

/// What every request starts with; the id follows.
const HEAD: &[u8] = b"{\"id\":";

/// Encodes requests from per-shape templates. One shape per mix entry (or one for ping).
pub struct Encoder {
    /// Everything after the id, closing brace included, per shape.
    tails: Vec<Vec<u8>>,
}

impl Encoder {
    pub fn new(spec: &LoadSpec) -> Encoder {
        let timing = if spec.timing { ",\"timing\":true" } else { "" };
        let tails: Vec<String> = match spec.cmd {
            Cmd::Ping => vec![format!(",\"cmd\":\"ping\"{timing}}}")],
            Cmd::Compute => spec
                .mix
                .iter()
                .enumerate()
                .map(|(i, (k, _))| {
                    format!(
                        ",\"cmd\":\"compute\",\"n\":{},\"kernel\":\"{}\"{timing}}}",
                        spec.size_of(i),
                        k.name()
                    )
                })
                .collect(),
        };
        Encoder {
            tails: tails.into_iter().map(String::into_bytes).collect(),
        }
    }

    /// Appends one framed request for mix entry `entry` with integer id `id` to `out`.
    pub fn encode(&self, entry: usize, id: u64, out: &mut Vec<u8>) {
        let Some(tail) = self.tails.get(entry).or(self.tails.first()) else {
            return;
        };
        put_frame_with(out, |out| {
            out.extend_from_slice(HEAD);
            out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            out.extend_from_slice(tail);
        });
    }
}

/// The expected result of each mix entry, computed once per run: `fib(10⁹)` takes seconds.
pub fn expected_results(spec: &LoadSpec) -> Vec<u64> {
    match spec.cmd {
        Cmd::Ping => Vec::new(),
        Cmd::Compute => spec
            .mix
            .iter()
            .enumerate()
            .map(|(i, (k, _))| Kernel::expected(*k, spec.size_of(i)))
            .collect(),
    }
}

/// A reply, parsed far enough to be matched to its request.
pub struct Parsed {
    pub reply: ClientReply,
    /// The id as this driver sent it; `None` when the reply carries no usable integer id.
    pub id: Option<u64>,
}

/// Parses a reply frame. `Err` means the payload is not a JSON object at all.
pub fn parse_reply(payload: &[u8]) -> Result<Parsed, String> {
    let shown = || String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
    // serde would also read a struct from a JSON array (`[7]` as id 7): only objects are replies.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(format!("reply is not a JSON object: {:?}", shown()));
    }
    if let Some(parsed) = parse_own_reply(payload) {
        return Ok(parsed);
    }
    let reply: ClientReply = serde_json::from_slice(payload)
        .map_err(|e| format!("reply is not a protocol JSON object ({e}): {:?}", shown()))?;
    let id = reply.id.as_ref().and_then(sent_id);
    Ok(Parsed { reply, id })
}

/// The integer id this driver sent that a reply's `id` echoes, if it echoes one: the number
/// itself, or its canonical decimal text, as the original Python server echoes it (`str(id)`).
/// Any other spelling of the number (`"07"`, `"+7"`, `" 7"`, `"7.0"`) is not the id that was
/// sent: a server that rewrites ids must not have its replies matched.
pub fn sent_id(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => canonical_u64(s),
        _ => None,
    }
}

/// `s` as Python's `str(int)` writes a non-negative integer: what JSON writes one as (digits,
/// no sign, no leading zero but `"0"` itself), and nothing else around it; `None` past `u64`.
fn canonical_u64(s: &str) -> Option<u64> {
    crate::protocol::json_uint(s.as_bytes())
        .filter(|&(_, len)| len == s.len())
        .map(|(v, _)| v)
}

/// The replies this crate's server writes for results and pongs (`Reply::encode_into`), in
/// their one layout, read by matching it byte for byte: a few comparisons per reply instead of
/// a general JSON parse. Anything that departs from it (another server, a string id, an error,
/// whitespace, a number JSON would refuse such as `01`) returns `None` and takes the general
/// path, so this never accepts a reply serde_json would refuse, or reads one differently.
fn parse_own_reply(p: &[u8]) -> Option<Parsed> {
    let mut c = Cursor(p);
    c.tag(b"{\"id\":")?;
    let id = c.uint()?;
    let (result, ok, pong) = if c.tag(b",\"result\":").is_some() {
        (Some(c.uint()?), None, None)
    } else {
        c.tag(b",\"ok\":true,\"pong\":true")?;
        (None, Some(true), Some(true))
    };
    let t = match c.tag(b",\"t\":{\"queue_us\":") {
        None => None,
        Some(()) => {
            let queue_us = c.decimal()?;
            c.tag(b",\"compute_us\":")?;
            let compute_us = c.decimal()?;
            c.tag(b",\"server_us\":")?;
            let server_us = c.decimal()?;
            c.tag(b"}")?;
            Some(Timings {
                queue_us,
                compute_us,
                server_us,
            })
        }
    };
    c.tag(b"}")?;
    if !c.0.is_empty() {
        return None;
    }
    Some(Parsed {
        reply: ClientReply {
            id: Some(Value::from(id)),
            result,
            ok,
            pong,
            error: None,
            detail: None,
            t,
        },
        id: Some(id),
    })
}

struct Cursor<'a>(&'a [u8]);

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

impl Cursor<'_> {
    fn tag(&mut self, t: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(t)?;
        Some(())
    }

    fn uint(&mut self) -> Option<u64> {
        let (v, n) = crate::protocol::json_uint(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }

    /// `123` or `123.456` (no sign, no exponent), parsed as Rust parses an f64: exactly
    /// as serde_json's default reading of the same digits.
    fn decimal(&mut self) -> Option<f64> {
        // A pong's queue and compute time, and many a job's queue time.
        if let Some(rest) = self.0.strip_prefix(b"0.000") {
            if !rest.first().is_some_and(u8::is_ascii_digit) {
                self.0 = rest;
                return Some(0.0);
            }
        }
        let start = self.0;
        let int = crate::protocol::json_uint_len(start)?;
        self.0 = &start[int..];
        // Digits after the point, and the text's whole length.
        let (frac, len) = match self.0.strip_prefix(b".") {
            None => (0, int),
            Some(rest) => match rest.iter().take_while(|b| b.is_ascii_digit()).count() {
                0 => return None,
                frac => {
                    self.0 = &rest[frac..];
                    (frac, int + 1 + frac)
                }
            },
        };
        let text = &start[..len];
        // Up to 15 digits the value is an integer below 2^53 over a power of ten, both exact
        // in an f64, and IEEE division rounds their quotient correctly: the same f64 a full
        // decimal parse gives, for much less work.
        if int + frac <= 15 {
            let mantissa = text
                .iter()
                .filter(|b| b.is_ascii_digit())
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            return Some(mantissa as f64 / POW10[frac]);
        }
        std::str::from_utf8(text).ok()?.parse().ok()
    }
}

/// What one matched reply says about its request.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Correct; carries the server's timings when it sent them.
    Ok(Option<Timings>),
    /// Counted under this error kind, with a reason worth reporting once.
    Failed(&'static str, Option<String>),
}

/// Checks a reply against the request it answers.
pub fn check(
    reply: &ClientReply,
    cmd: Cmd,
    kernel: Option<Kernel>,
    expected: u64,
    n: u64,
) -> Verdict {
    if let Some(code) = &reply.error {
        return Verdict::Failed(error_kind(code), reply.detail.clone());
    }
    match cmd {
        Cmd::Compute => match reply.result {
            Some(r) if r == expected => Verdict::Ok(reply.t),
            Some(r) => Verdict::Failed(
                kind::MISMATCH,
                Some(format!(
                    "{}({n}) should be {expected}{}, the server said {r}",
                    kernel.map_or("compute", Kernel::name),
                    if kernel.is_some_and(Kernel::is_user) {
                        " (the first result seen for it: a user kernel must give the same \
                         result for the same n on every reply, backend and repetition)"
                    } else {
                        ""
                    }
                )),
            ),
            None => Verdict::Failed(
                kind::BAD_REPLY,
                Some("compute reply has neither `result` nor `error`".into()),
            ),
        },
        Cmd::Ping => {
            if reply.ok == Some(true) && reply.pong == Some(true) {
                Verdict::Ok(reply.t)
            } else {
                Verdict::Failed(
                    kind::BAD_REPLY,
                    Some("ping reply lacks `\"ok\": true, \"pong\": true`".into()),
                )
            }
        }
    }
}

/// The counter a server error code goes under: its contract name, or one bucket for codes
/// outside the contract so a misbehaving server cannot grow the error table without bound.
pub fn error_kind(code: &str) -> &'static str {
    ErrorCode::parse(code).map_or(kind::UNKNOWN_ERROR, ErrorCode::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_request, Command, Id};
    use serde_json::json;

    #[test]
    fn each_kernel_of_a_mix_can_have_its_own_size() {
        let spec = LoadSpec {
            mix: vec![(Kernel::Fib, 15), (Kernel::Tlb, 1)],
            size: 40_000,
            sizes: vec![40_000, 17],
            ..LoadSpec::default()
        };
        spec.validate().unwrap();
        let enc = Encoder::new(&spec);
        let mut out = Vec::new();
        enc.encode(1, 7, &mut out);
        let req = parse_request(&out[4..]).unwrap();
        assert_eq!(
            req.cmd,
            Command::Compute {
                kernel: "tlb".into(),
                n: 17
            }
        );
        assert_eq!(
            expected_results(&spec),
            vec![Kernel::Fib.expected(40_000), Kernel::Tlb.expected(17)]
        );
        let wrong = LoadSpec {
            sizes: vec![1],
            ..spec
        };
        assert!(wrong.validate().is_err(), "one size for two kernels");
    }

    #[test]
    fn encoded_requests_parse_as_the_server_reads_them() {
        let spec = LoadSpec {
            mix: vec![(Kernel::Fib, 9), (Kernel::Sleep, 1)],
            size: 1234,
            ..LoadSpec::default()
        };
        let enc = Encoder::new(&spec);
        let mut out = Vec::new();
        enc.encode(1, 0, &mut out);
        enc.encode(0, u64::MAX, &mut out);
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        let first = parse_request(&out[4..4 + len]).unwrap();
        assert_eq!(first.id, Id::Num(0));
        assert_eq!(
            first.cmd,
            Command::Compute {
                kernel: "sleep".into(),
                n: 1234
            }
        );
        assert!(first.timing);
        let rest = &out[4 + len..];
        let second = parse_request(&rest[4..]).unwrap();
        assert_eq!(second.id, Id::Num(u64::MAX));

        let ping = Encoder::new(&LoadSpec {
            cmd: Cmd::Ping,
            timing: false,
            ..LoadSpec::default()
        });
        out.clear();
        ping.encode(0, 42, &mut out);
        assert_eq!(&out[4..], br#"{"id":42,"cmd":"ping"}"#);
    }

    #[test]
    fn replies_are_matched_whether_ids_are_numbers_or_strings() {
        assert_eq!(
            parse_reply(br#"{"id": 7, "result": 1}"#).unwrap().id,
            Some(7)
        );
        assert_eq!(
            parse_reply(br#"{"id": "7", "result": 1}"#).unwrap().id,
            Some(7)
        );
        assert_eq!(parse_reply(br#"{"id": "x7"}"#).unwrap().id, None);
        assert_eq!(
            parse_reply(br#"{"id": "0", "result": 1}"#).unwrap().id,
            Some(0)
        );
        assert_eq!(
            parse_reply(br#"{"id": "18446744073709551615", "result": 1}"#)
                .unwrap()
                .id,
            Some(u64::MAX)
        );
        assert_eq!(
            parse_reply(br#"{"id": null, "error": "bad_json"}"#)
                .unwrap()
                .id,
            None
        );
        assert!(parse_reply(b"[1]").is_err());
        assert!(parse_reply(b" 7").is_err());
        assert!(parse_reply(br#"{"id": 1, "result": "x"}"#).is_err());
        assert!(parse_reply(b"\xff").is_err());
    }

    /// Only the decimal text the original server's `str(id)` gives matches an integer id:
    /// a server that rewrites `7` as `"07"` or `"+7"` sent a reply to no request.
    #[test]
    fn a_string_id_matches_only_in_canonical_decimal() {
        for id in [
            "07",
            "+7",
            "-0",
            "00",
            "0x7",
            " 7",
            "7 ",
            "7.0",
            "7e0",
            "",
            "\u{0667}",
            "1_0",
            "18446744073709551616",
        ] {
            let reply = json!({"id": id, "result": 1}).to_string();
            assert_eq!(parse_reply(reply.as_bytes()).unwrap().id, None, "{id:?}");
        }
        for (id, n) in [("7", 7), ("10", 10), ("0", 0), ("1000000", 1_000_000)] {
            let reply = json!({"id": id, "result": 1}).to_string();
            assert_eq!(parse_reply(reply.as_bytes()).unwrap().id, Some(n), "{id:?}");
        }
    }

    #[test]
    fn checks_results_pongs_and_error_codes() {
        let r = |s: &str| parse_reply(s.as_bytes()).unwrap().reply;
        let fib = Some(Kernel::Fib);
        assert_eq!(
            check(&r(r#"{"id":1,"result":5}"#), Cmd::Compute, fib, 5, 3),
            Verdict::Ok(None)
        );
        let t = check(
            &r(r#"{"id":1,"result":5,"t":{"queue_us":1,"compute_us":2,"server_us":4}}"#),
            Cmd::Compute,
            fib,
            5,
            3,
        );
        assert!(matches!(t, Verdict::Ok(Some(t)) if t.server_us == 4.0));
        assert!(matches!(
            check(&r(r#"{"id":1,"result":6}"#), Cmd::Compute, fib, 5, 3),
            Verdict::Failed(kind::MISMATCH, Some(_))
        ));
        assert!(matches!(
            check(&r(r#"{"id":1}"#), Cmd::Compute, fib, 5, 3),
            Verdict::Failed(kind::BAD_REPLY, _)
        ));
        assert!(matches!(
            check(
                &r(r#"{"id":1,"error":"overloaded","detail":"full"}"#),
                Cmd::Compute,
                fib,
                5,
                3
            ),
            Verdict::Failed("overloaded", Some(_))
        ));
        assert!(matches!(
            check(
                &r(r#"{"id":1,"error":"no_such_code"}"#),
                Cmd::Ping,
                None,
                0,
                0
            ),
            Verdict::Failed(kind::UNKNOWN_ERROR, _)
        ));
        assert_eq!(
            check(
                &r(r#"{"id":"1","ok":true,"pong":true}"#),
                Cmd::Ping,
                None,
                0,
                0
            ),
            Verdict::Ok(None)
        );
        assert!(matches!(
            check(&r(r#"{"id":"1","ok":true}"#), Cmd::Ping, None, 0, 0),
            Verdict::Failed(kind::BAD_REPLY, _)
        ));
    }

    #[test]
    fn own_replies_are_read_exactly_as_the_general_parse_reads_them() {
        use crate::protocol::{Reply, Timings};
        let general = |p: &[u8]| -> Option<(Option<u64>, ClientReply)> {
            let r: ClientReply = serde_json::from_slice(p).ok()?;
            Some((r.id.as_ref().and_then(sent_id), r))
        };
        let same = |p: &[u8]| {
            let fast = parse_own_reply(p);
            if let Some(f) = &fast {
                let (id, r) = general(p).expect("the fast path took what serde refuses");
                assert_eq!(f.id, id, "{}", String::from_utf8_lossy(p));
                assert_eq!(
                    (
                        &f.reply.id,
                        f.reply.result,
                        f.reply.ok,
                        f.reply.pong,
                        f.reply.t
                    ),
                    (&r.id, r.result, r.ok, r.pong, r.t),
                    "{}",
                    String::from_utf8_lossy(p)
                );
                assert!(r.error.is_none() && r.detail.is_none());
            }
            fast.is_some()
        };
        let t = Some(Timings {
            queue_us: 0.25,
            compute_us: 4000.123,
            server_us: 17.0,
        });
        for id in [0, 7, u64::MAX] {
            for t in [None, t] {
                for reply in [
                    Reply::Result {
                        id: Id::Num(id),
                        result: 869502129,
                        t,
                    },
                    Reply::Pong { id: Id::Num(id), t },
                ] {
                    let mut out = Vec::new();
                    reply.encode_into(&mut out);
                    assert!(
                        same(&out),
                        "own layout not taken: {}",
                        String::from_utf8_lossy(&out)
                    );
                }
            }
        }
        // Departures from the layout take the general path (and are read or refused there).
        for p in [
            r#"{"id":"7","result":5}"#,
            r#"{"id":07,"result":5}"#,
            r#"{"id":7,"result":5} "#,
            r#"{"id":7,"result":5,"t":{"queue_us":1e3,"compute_us":1,"server_us":2}}"#,
            r#"{"id":7,"result":5,"t":{"queue_us":1.,"compute_us":1,"server_us":2}}"#,
            r#"{"id":7,"result":-5}"#,
            r#"{"id":18446744073709551616,"result":5}"#,
            r#"{"id":7,"ok":true,"pong":false}"#,
            r#"{"id":7,"error":"timeout","detail":"x"}"#,
            r#"{"id":7,"result":5}}"#,
            r#"{"id":7,"result":5"#,
        ] {
            assert!(!same(p.as_bytes()), "{p}");
        }
        // The general path still reads what the fast one leaves.
        assert_eq!(
            parse_reply(br#"{"id":"7","result":5}"#).unwrap().id,
            Some(7)
        );
        assert!(parse_reply(br#"{"id":07,"result":5}"#).is_err());
    }

    /// The shortcut for a zero reads what the digit-by-digit path reads, and stops where it
    /// would: a longer number is not cut short.
    #[test]
    fn a_zero_reads_as_zero_and_only_as_far_as_it_goes() {
        for (text, value, rest) in [
            ("0.000", 0.0, ""),
            ("0.000,\"x\"", 0.0, ",\"x\""),
            ("0.000}", 0.0, "}"),
            ("0.0001}", 0.0001, "}"),
            ("0.0009", 0.0009, ""),
            ("0.000000", 0.0, ""),
            ("0.00}", 0.0, "}"),
            ("0}", 0.0, "}"),
        ] {
            let mut c = Cursor(text.as_bytes());
            let read = c.decimal().unwrap();
            assert_eq!(read.to_bits(), f64::to_bits(value), "{text}");
            assert_eq!(c.0, rest.as_bytes(), "{text}");
        }
        // Not a number JSON allows: refused as before.
        assert_eq!(Cursor(b"00.000").decimal(), None);
    }

    proptest::proptest! {
        /// The short decimal reading is bit for bit the full parse, at every length.
        #[test]
        fn decimals_read_as_rust_parses_them(int in 0u64..10_000_000_000_000_000, frac in "[0-9]{0,9}") {
            let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            let read = Cursor(text.as_bytes()).decimal();
            proptest::prop_assert_eq!(read.map(f64::to_bits), Some(text.parse::<f64>().unwrap().to_bits()), "{}", text);
        }
    }
}
