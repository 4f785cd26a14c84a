//! Replies: what the server encodes, and what a client parses back.

use super::{ErrorReply, Id};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Server-side timings of one request (SPEC §2.1), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for a worker: from submission until the kernel started.
    pub queue_us: f64,
    /// Inside the kernel.
    pub compute_us: f64,
    /// From the request frame fully read to the reply encoded.
    pub server_us: f64,
}

/// Every reply the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Result {
        id: Id,
        result: u64,
        t: Option<Timings>,
    },
    Pong {
        id: Id,
        t: Option<Timings>,
    },
    Error(ErrorReply),
}

impl Reply {
    /// Appends the reply's JSON payload (no length prefix) to `out`.
    ///
    /// Results and pongs, the replies sent at full rate, are written by hand: the same bytes
    /// serde_json would write (fields in the same order, strings escaped the same way), except
    /// that timings are written to the nanosecond (`12.345`) rather than as the shortest f64
    /// that round-trips, which is both cheaper to write and to parse and loses nothing the
    /// server's clock could measure.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Result { id, result, t } => {
                out.extend_from_slice(b"{\"id\":");
                put_id(out, id);
                out.extend_from_slice(b",\"result\":");
                out.extend_from_slice(itoa::Buffer::new().format(*result).as_bytes());
                put_timings(out, t.as_ref());
            }
            Reply::Pong { id, t } => encode_pong(id, t.as_ref(), out),
            Reply::Error(e) => {
                // Serializing this plain struct into a Vec cannot fail.
                let r = serde_json::to_writer(&mut *out, e);
                debug_assert!(r.is_ok());
            }
        }
    }

    pub fn id(&self) -> Option<&Id> {
        match self {
            Reply::Result { id, .. } | Reply::Pong { id, .. } => Some(id),
            Reply::Error(e) => e.id.as_ref(),
        }
    }
}

/// Appends a pong's JSON payload, as [`Reply::Pong`] encodes it, for an id the caller keeps:
/// the server answers a ping without moving or copying its id.
pub fn encode_pong(id: &Id, t: Option<&Timings>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    put_id(out, id);
    out.extend_from_slice(b",\"ok\":true,\"pong\":true");
    put_timings(out, t);
}

/// A reply as a client sees it, parsed leniently: the original Python server echoes every id
/// back as a string and sends no timings, so both are optional here.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientReply {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub result: Option<u64>,
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub pong: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub t: Option<Timings>,
}

impl ClientReply {
    /// The id as a string, however the server encoded it (`7` and `"7"` both give "7").
    pub fn id_string(&self) -> Option<String> {
        match self.id.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Writes an id as serde_json would: a number bare, a string quoted and, only where it holds
/// a quote, a backslash or a control character, escaped by serde_json itself.
fn put_id(out: &mut Vec<u8>, id: &Id) {
    match id {
        Id::Num(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Id::Str(s) if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        Id::Str(s) => {
            let r = serde_json::to_writer(&mut *out, s);
            debug_assert!(r.is_ok());
        }
    }
}

/// Closes the object, with `,"t":{...}` before the brace when there are timings.
fn put_timings(out: &mut Vec<u8>, t: Option<&Timings>) {
    if let Some(t) = t {
        out.extend_from_slice(b",\"t\":{\"queue_us\":");
        put_micros(out, t.queue_us);
        out.extend_from_slice(b",\"compute_us\":");
        put_micros(out, t.compute_us);
        out.extend_from_slice(b",\"server_us\":");
        put_micros(out, t.server_us);
        out.push(b'}');
    }
    out.push(b'}');
}

/// Microseconds to the nanosecond: `12.345`. A value this cannot write exactly enough (negative,
/// huge, not finite) goes through serde_json, which writes `null` for what JSON cannot hold.
fn put_micros(out: &mut Vec<u8>, us: f64) {
    if us == 0.0 {
        // A pong's queue and compute time, and many a job's queue time: what the general case
        // writes for it, without the arithmetic.
        out.extend_from_slice(b"0.000");
    } else if us.is_finite() && (0.0..1e12).contains(&us) {
        // Rounded half up (libm's `round` was a call per value).
        let ns = (us * 1000.0 + 0.5) as u64;
        out.extend_from_slice(itoa::Buffer::new().format(ns / 1000).as_bytes());
        let frac = (ns % 1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    } else {
        let r = serde_json::to_writer(&mut *out, &us);
        debug_assert!(r.is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn replies_have_the_original_shapes() {
        let mut out = Vec::new();
        Reply::Pong {
            id: Id::Str("u".into()),
            t: None,
        }
        .encode_into(&mut out);
        assert_eq!(out, br#"{"id":"u","ok":true,"pong":true}"#);
        out.clear();
        Reply::Result {
            id: Id::Num(3),
            result: 869502129,
            t: None,
        }
        .encode_into(&mut out);
        assert_eq!(out, br#"{"id":3,"result":869502129}"#);
        out.clear();
        Reply::Error(ErrorReply::new(None, ErrorCode::BadJson, "x")).encode_into(&mut out);
        assert_eq!(out, br#"{"id":null,"error":"bad_json","detail":"x"}"#);
    }

    #[test]
    fn hand_written_replies_say_what_serde_json_would() {
        let ids = [
            Id::Num(0),
            Id::Num(u64::MAX),
            Id::Str(String::new()),
            Id::Str("1b4e28ba-2fa1-11d2-883f-0016d3cca427".into()),
            Id::Str("quote \" back \\ tab \t nul \0 é ☃".into()),
        ];
        let timings = [
            None,
            Some(Timings {
                queue_us: 0.0,
                compute_us: 4000.25,
                server_us: 12.3456,
            }),
            Some(Timings {
                queue_us: f64::NAN,
                compute_us: -1.0,
                server_us: 1e13,
            }),
        ];
        for id in &ids {
            for t in timings {
                for reply in [
                    Reply::Result {
                        id: id.clone(),
                        result: 869502129,
                        t,
                    },
                    Reply::Pong { id: id.clone(), t },
                ] {
                    let mut out = Vec::new();
                    reply.encode_into(&mut out);
                    let ours: Value = serde_json::from_slice(&out).expect("valid JSON");
                    let expected = match &reply {
                        Reply::Result { id, result, .. } => {
                            serde_json::json!({"id": id, "result": result})
                        }
                        Reply::Pong { id, .. } => {
                            serde_json::json!({"id": id, "ok": true, "pong": true})
                        }
                        Reply::Error(_) => unreachable!(),
                    };
                    let mut expected = expected;
                    if let Some(t) = t {
                        // To the nanosecond; what JSON cannot hold is null, as serde_json has it.
                        let ns = |x: f64| {
                            if x.is_finite() && (0.0..1e12).contains(&x) {
                                serde_json::json!((x * 1000.0).round() / 1000.0)
                            } else {
                                serde_json::json!(x)
                            }
                        };
                        expected["t"] = serde_json::json!({
                            "queue_us": ns(t.queue_us),
                            "compute_us": ns(t.compute_us),
                            "server_us": ns(t.server_us),
                        });
                    }
                    assert_eq!(ours, expected, "{}", String::from_utf8_lossy(&out));
                    // Same key order as the derived encoding had: id first.
                    assert!(out.starts_with(b"{\"id\":"));
                }
            }
        }
    }

    #[test]
    fn timings_are_written_to_the_nanosecond() {
        let mut out = Vec::new();
        put_micros(&mut out, 12.3456);
        put_micros(&mut out, 0.0004);
        put_micros(&mut out, 7.0);
        put_micros(&mut out, 0.9999);
        assert_eq!(out, b"12.3460.0007.0001.000");
        // Zero, as a pong's queue and compute time are: written as any value under half a
        // nanosecond is.
        out.clear();
        put_micros(&mut out, 0.0);
        put_micros(&mut out, -0.0);
        put_micros(&mut out, 0.0000004);
        assert_eq!(out, b"0.0000.0000.000");
    }
}
