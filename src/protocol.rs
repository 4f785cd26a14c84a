//! The wire protocol: requests, replies, error codes and limits.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one
//! object (see `docs/PROTOCOL.md`). This module knows nothing about sockets: it turns a frame's
//! payload into a [`Request`] (or an [`ErrorReply`] that says precisely what was wrong with it)
//! and turns replies back into payload bytes. Framing itself lives in [`crate::connection`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// Every error code a reply can carry (contract: these exact strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    FrameTooLarge,
    BadJson,
    BadRequest,
    UnknownCmd,
    UnknownKernel,
    NOutOfRange,
    IdTooLong,
    DuplicateId,
    TooManyConnections,
    Overloaded,
    Timeout,
    WorkerCrashed,
    JobPanicked,
    ShuttingDown,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::FrameTooLarge,
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCmd,
        ErrorCode::UnknownKernel,
        ErrorCode::NOutOfRange,
        ErrorCode::IdTooLong,
        ErrorCode::DuplicateId,
        ErrorCode::TooManyConnections,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
        ErrorCode::WorkerCrashed,
        ErrorCode::JobPanicked,
        ErrorCode::ShuttingDown,
        ErrorCode::InternalError,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCmd => "unknown_cmd",
            ErrorCode::UnknownKernel => "unknown_kernel",
            ErrorCode::NOutOfRange => "n_out_of_range",
            ErrorCode::IdTooLong => "id_too_long",
            ErrorCode::DuplicateId => "duplicate_id",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::WorkerCrashed => "worker_crashed",
            ErrorCode::JobPanicked => "job_panicked",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a well-formed request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ping,
    /// Run `kernel` (a name checked later against [`crate::kernel::Kernel`]) with work size `n`.
    Compute {
        kernel: String,
        n: u64,
    },
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Id,
    pub cmd: Command,
    /// Add server-side timings to the reply.
    pub timing: bool,
}

/// A request that could not be served: the reply to send instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub id: Option<Id>,
    pub error: ErrorCode,
    pub detail: String,
}

impl ErrorReply {
    pub fn new(id: Option<Id>, error: ErrorCode, detail: impl Into<String>) -> Self {
        ErrorReply {
            id,
            error,
            detail: detail.into(),
        }
    }
}

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

/// The fast path: a request whose fields all have the expected types.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    id: Option<RawId<'a>>,
    #[serde(borrow)]
    cmd: Option<std::borrow::Cow<'a, str>>,
    n: Option<u64>,
    #[serde(borrow)]
    kernel: Option<std::borrow::Cow<'a, str>>,
    timing: Option<bool>,
    // Unknown fields are ignored (serde's default), as the original server does.
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawId<'a> {
    Num(u64),
    #[serde(borrow)]
    Str(std::borrow::Cow<'a, str>),
}

/// Parses one frame's payload into a request.
///
/// Errors carry the request's id whenever it could be read, so a client can match even its
/// rejected requests. Kernel names and `n` ranges are checked by the caller against
/// [`crate::kernel`], since only it knows the limits.
pub fn parse_request(payload: &[u8]) -> Result<Request, ErrorReply> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        ErrorReply::new(
            None,
            ErrorCode::BadJson,
            format!("frame is not valid UTF-8: {e}"),
        )
    })?;
    match serde_json::from_str::<Raw>(text) {
        Ok(raw) => from_raw(raw),
        // Something is off: parse generically to say precisely what, and to recover the id.
        Err(e) => Err(diagnose(text, &e)),
    }
}

fn from_raw(raw: Raw) -> Result<Request, ErrorReply> {
    let id = match raw.id {
        None => {
            return Err(ErrorReply::new(
                None,
                ErrorCode::BadRequest,
                "missing field `id` (a string or a non-negative integer)",
            ))
        }
        Some(RawId::Num(n)) => Id::Num(n),
        Some(RawId::Str(s)) => {
            if s.len() > MAX_ID_LEN {
                return Err(ErrorReply::new(
                    None,
                    ErrorCode::IdTooLong,
                    format!("id is {} bytes; at most {MAX_ID_LEN} allowed", s.len()),
                ));
            }
            Id::Str(s.into_owned())
        }
    };
    let timing = raw.timing.unwrap_or(false);
    let cmd = match raw.cmd.as_deref() {
        None => {
            return Err(ErrorReply::new(
                Some(id),
                ErrorCode::BadRequest,
                "missing field `cmd` (\"compute\" or \"ping\")",
            ))
        }
        Some("ping") => Command::Ping,
        Some("compute") => Command::Compute {
            kernel: raw
                .kernel
                .map(|k| k.into_owned())
                .unwrap_or_else(|| "fib".to_string()),
            n: raw.n.unwrap_or(DEFAULT_N),
        },
        Some(other) => {
            return Err(ErrorReply::new(
                Some(id),
                ErrorCode::UnknownCmd,
                format!(
                    "unknown cmd {:?}; expected \"compute\" or \"ping\"",
                    truncate(other, 64)
                ),
            ))
        }
    };
    Ok(Request { id, cmd, timing })
}

/// Explains why a payload failed the typed parse: bad JSON, not an object, or a field of the
/// wrong type. Recovers the id when it is valid, so the error can be matched by the client.
fn diagnose(text: &str, typed_error: &serde_json::Error) -> ErrorReply {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return ErrorReply::new(None, ErrorCode::BadJson, format!("invalid JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return ErrorReply::new(
            None,
            ErrorCode::BadRequest,
            format!("a request must be a JSON object, got {}", kind_of(&value)),
        );
    };
    let id = match obj.get("id") {
        None => {
            return ErrorReply::new(
                None,
                ErrorCode::BadRequest,
                "missing field `id` (a string or a non-negative integer)",
            )
        }
        Some(Value::String(s)) if s.len() > MAX_ID_LEN => {
            return ErrorReply::new(
                None,
                ErrorCode::IdTooLong,
                format!("id is {} bytes; at most {MAX_ID_LEN} allowed", s.len()),
            )
        }
        Some(Value::String(s)) => Id::Str(s.clone()),
        Some(v) => match v.as_u64() {
            Some(n) => Id::Num(n),
            None => {
                return ErrorReply::new(
                    None,
                    ErrorCode::BadRequest,
                    format!(
                        "`id` must be a string or a non-negative integer, got {}",
                        kind_of(v)
                    ),
                )
            }
        },
    };
    let bad = |detail: String| ErrorReply::new(Some(id.clone()), ErrorCode::BadRequest, detail);
    match obj.get("cmd") {
        Some(Value::String(_)) | None => {}
        Some(v) => return bad(format!("`cmd` must be a string, got {}", kind_of(v))),
    }
    match obj.get("n") {
        None => {}
        Some(Value::Number(num)) if num.as_u64().is_some() => {}
        Some(Value::Number(num)) if num.is_i64() => {
            return ErrorReply::new(
                Some(id),
                ErrorCode::NOutOfRange,
                format!("`n` must be non-negative, got {num}"),
            )
        }
        Some(Value::Number(num))
            if num.is_f64() && num.as_f64().is_some_and(|f| f.fract() == 0.0 && f > 0.0) =>
        {
            return ErrorReply::new(
                Some(id),
                ErrorCode::NOutOfRange,
                format!("`n` = {num} is beyond any kernel's range"),
            )
        }
        Some(v) => {
            return bad(format!(
                "`n` must be a non-negative integer, got {}",
                kind_of(v)
            ))
        }
    }
    match obj.get("kernel") {
        Some(Value::String(_)) | None => {}
        Some(v) => return bad(format!("`kernel` must be a string, got {}", kind_of(v))),
    }
    match obj.get("timing") {
        Some(Value::Bool(_)) | None => {}
        Some(v) => {
            return bad(format!(
                "`timing` must be true or false, got {}",
                kind_of(v)
            ))
        }
    }
    // Every field has the right type, yet the typed parse failed: a duplicated key, which a
    // generic parse silently resolves to the last value. Refuse it rather than guess.
    bad(format!("request rejected: {typed_error}"))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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

    fn err(payload: &str) -> ErrorReply {
        parse_request(payload.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_the_original_clients_request() {
        let r = parse_request(br#"{"id": "abc", "cmd": "compute", "n": 500000}"#).unwrap();
        assert_eq!(r.id, Id::Str("abc".into()));
        assert_eq!(
            r.cmd,
            Command::Compute {
                kernel: "fib".into(),
                n: 500000
            }
        );
        assert!(!r.timing);
    }

    #[test]
    fn compute_without_n_uses_the_original_default() {
        let r = parse_request(br#"{"id": 1, "cmd": "compute"}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::Compute {
                kernel: "fib".into(),
                n: DEFAULT_N
            }
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let r = parse_request(br#"{"id": 1, "cmd": "ping", "x": [1,{"y":2}]}"#).unwrap();
        assert_eq!(r.cmd, Command::Ping);
    }

    #[test]
    fn content_errors_have_their_codes_and_keep_the_id() {
        assert_eq!(err("{nope").error, ErrorCode::BadJson);
        assert_eq!(err("[1,2]").error, ErrorCode::BadRequest);
        let e = err(r#"{"id": 5, "cmd": "dance"}"#);
        assert_eq!((e.error, e.id), (ErrorCode::UnknownCmd, Some(Id::Num(5))));
        let e = err(r#"{"id": "a", "cmd": "compute", "n": -3}"#);
        assert_eq!(
            (e.error, e.id),
            (ErrorCode::NOutOfRange, Some(Id::Str("a".into())))
        );
        let e = err(r#"{"id": "a", "cmd": "compute", "n": 1.5}"#);
        assert_eq!(e.error, ErrorCode::BadRequest);
        let e = err(r#"{"id": "a", "cmd": "compute", "n": "12"}"#);
        assert_eq!(e.error, ErrorCode::BadRequest);
        let e = err(r#"{"id": "a", "cmd": "compute", "n": 1e300}"#);
        assert_eq!(e.error, ErrorCode::NOutOfRange);
        let e = err(r#"{"id": -1, "cmd": "ping"}"#);
        assert_eq!((e.error, e.id), (ErrorCode::BadRequest, None));
        let long = "x".repeat(MAX_ID_LEN + 1);
        let e = err(&format!(r#"{{"id": "{long}", "cmd": "ping"}}"#));
        assert_eq!(e.error, ErrorCode::IdTooLong);
        assert_eq!(err(r#"{"cmd": "ping"}"#).error, ErrorCode::BadRequest);
        assert_eq!(err(r#"{"id": 1}"#).error, ErrorCode::BadRequest);
        assert_eq!(
            parse_request(&[b'{', 0xff, b'}']).unwrap_err().error,
            ErrorCode::BadJson
        );
    }

    #[test]
    fn a_duplicated_key_is_refused_not_guessed() {
        let e = err(r#"{"id": 1, "cmd": "compute", "n": 5, "n": 6}"#);
        assert_eq!((e.error, e.id), (ErrorCode::BadRequest, Some(Id::Num(1))));
        assert!(e.detail.contains("duplicate"), "{}", e.detail);
    }

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
    fn every_error_code_round_trips_through_its_name() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
    }
}
