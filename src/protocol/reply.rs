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

#[derive(Serialize)]
struct ResultOut<'a> {
    id: &'a Id,
    result: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a Timings>,
}

#[derive(Serialize)]
struct PongOut<'a> {
    id: &'a Id,
    ok: bool,
    pong: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a Timings>,
}

impl Reply {
    /// Appends the reply's JSON payload (no length prefix) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Serializing these plain structs into a Vec cannot fail.
        let r = match self {
            Reply::Result { id, result, t } => serde_json::to_writer(
                &mut *out,
                &ResultOut {
                    id,
                    result: *result,
                    t: t.as_ref(),
                },
            ),
            Reply::Pong { id, t } => serde_json::to_writer(
                &mut *out,
                &PongOut {
                    id,
                    ok: true,
                    pong: true,
                    t: t.as_ref(),
                },
            ),
            Reply::Error(e) => serde_json::to_writer(&mut *out, e),
        };
        debug_assert!(r.is_ok());
    }

    pub fn id(&self) -> Option<&Id> {
        match self {
            Reply::Result { id, .. } | Reply::Pong { id, .. } => Some(id),
            Reply::Error(e) => e.id.as_ref(),
        }
    }
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
}
