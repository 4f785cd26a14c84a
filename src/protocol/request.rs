//! Requests: a frame's payload parsed into a [`Request`], or into the [`ErrorReply`] that says
//! precisely what was wrong with it.

use super::{ErrorCode, ErrorReply, Id, DEFAULT_N, MAX_ID_LEN};
use serde::Deserialize;
use serde_json::Value;

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
}
