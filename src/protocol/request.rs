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
///
/// Each field is `None` only when it is absent. serde reads `null` into an `Option` as `None`,
/// which would serve `"n": null` as a request without `n` (the 1000000 default); here a present
/// field must have its type, and `null` is a value of the wrong type, left to [`diagnose`].
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<RawId<'a>>,
    #[serde(borrow, default, deserialize_with = "present_str")]
    cmd: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    n: Option<u64>,
    #[serde(borrow, default, deserialize_with = "present_str")]
    kernel: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    timing: Option<bool>,
    // Unknown fields are ignored (serde's default), as the original server does.
}

/// A field that is there: its value must be a `T` (`null` is refused, not read as absent).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// [`present`] for a string, borrowed from the payload when it has no escapes.
fn present_str<'de: 'a, 'a, D>(d: D) -> Result<Option<std::borrow::Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = std::borrow::Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Borrowed(s))
        }
        fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(s))
        }
    }
    d.deserialize_str(Visit).map(Some)
}

/// An id as it arrives. Deserialized by hand: an untagged enum makes serde buffer every id
/// into an intermediate value (an allocation and a second pass per request) before it tries
/// each variant.
enum RawId<'a> {
    Num(u64),
    Str(std::borrow::Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawId<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawId<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a non-negative integer")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(RawId::Num(n))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(RawId::Str(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(RawId::Str(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Parses one frame's payload into a request.
///
/// Errors carry the request's id whenever it could be read, so a client can match even its
/// rejected requests. Kernel names and `n` ranges are checked by the caller against
/// [`crate::kernel`], since only it knows the limits.
pub fn parse_request(payload: &[u8]) -> Result<Request, ErrorReply> {
    if let Some(request) = compact::parse(payload) {
        return Ok(request);
    }
    parse_general(payload)
}

/// Any payload: the flat reader where it applies, else serde and its diagnosis.
fn parse_general(payload: &[u8]) -> Result<Request, ErrorReply> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        ErrorReply::new(
            None,
            ErrorCode::BadJson,
            format!("frame is not valid UTF-8: {e}"),
        )
    })?;
    if let Some(raw) = flat::parse(text) {
        return from_raw(raw);
    }
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

/// The requests this crate's driver writes (`load::verify::Encoder`), read by matching their
/// one compact layout byte for byte, as the driver reads this server's replies:
/// `{"id":ID,"cmd":"ping"}` or `{"id":ID,"cmd":"compute","n":N,"kernel":"NAME"}`, each with or
/// without `,"timing":true` before the closing brace, ID and N unsigned integers, NAME made of
/// ASCII letters, digits and `_-.:`. Anything else, a space included, returns `None` and takes
/// the general path, so this never accepts a request the general path refuses or reads one
/// differently (property-tested below). When the server is the limit, as a ping server at
/// depth 16 is, the general path's UTF-8 check and scanner were a tenth of its CPU per request.
mod compact {
    use super::{Command, Request};
    use crate::protocol::{json_uint, Id};

    pub(super) fn parse(p: &[u8]) -> Option<Request> {
        let rest = p.strip_prefix(b"{\"id\":")?;
        let (id, digits) = json_uint(rest)?;
        let rest = &rest[digits..];
        let (cmd, rest) = match rest.strip_prefix(b",\"cmd\":\"ping\"") {
            Some(rest) => (Command::Ping, rest),
            None => {
                let rest = rest.strip_prefix(b",\"cmd\":\"compute\",\"n\":")?;
                let (n, digits) = json_uint(rest)?;
                let rest = rest[digits..].strip_prefix(b",\"kernel\":\"")?;
                let len = rest.iter().position(|&b| !is_name_byte(b))?;
                let (name, rest) = rest.split_at(len);
                let rest = rest.strip_prefix(b"\"")?;
                let kernel = std::str::from_utf8(name).ok()?.to_owned();
                (Command::Compute { kernel, n }, rest)
            }
        };
        let timing = match rest {
            b"}" => false,
            b",\"timing\":true}" => true,
            _ => return None,
        };
        Some(Request {
            id: Id::Num(id),
            cmd,
            timing,
        })
    }

    /// The bytes a kernel name may have here: every built-in name and user kernel's prefix
    /// (`lib:`, `py:`) is made of them; a name with any other byte takes the general path.
    fn is_name_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
    }
}

/// The common request read without serde: one flat object whose values are unsigned
/// integers, strings without escapes, or booleans, with JSON's whitespace anywhere and keys in
/// any order. It reads that object exactly as the derived [`Raw`] does, and gives up (`None`)
/// on anything else (a nested value, `null`, a float, an escape, a repeated known key,
/// trailing bytes), which then takes serde's path and its diagnosis. At a million requests a
/// second, serde's general machinery was the server's largest user-space cost.
mod flat {
    use super::{Raw, RawId};
    use std::borrow::Cow;

    enum Scalar<'a> {
        Uint(u64),
        Str(&'a str),
        Bool(bool),
    }

    /// Keys are matched as bytes and strings cut out of the already checked `text` at their
    /// quotes (ASCII, so always character boundaries): no string is validated twice.
    pub(super) fn parse(text: &str) -> Option<Raw<'_>> {
        let p = text.as_bytes();
        let mut raw = Raw {
            id: None,
            cmd: None,
            n: None,
            kernel: None,
            timing: None,
        };
        let mut i = skip_ws(p, 0);
        if p.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(p, i + 1);
        if p.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let (key, at) = string(text, i)?;
                i = skip_ws(p, at);
                if p.get(i) != Some(&b':') {
                    return None;
                }
                let (value, at) = scalar(text, skip_ws(p, i + 1))?;
                i = skip_ws(p, at);
                // A known key twice is serde's "duplicate field" error: leave it to serde.
                match (key.as_bytes(), value) {
                    (b"id", _) if raw.id.is_some() => return None,
                    (b"id", Scalar::Uint(n)) => raw.id = Some(RawId::Num(n)),
                    (b"id", Scalar::Str(s)) => raw.id = Some(RawId::Str(Cow::Borrowed(s))),
                    (b"cmd", Scalar::Str(s)) if raw.cmd.is_none() => {
                        raw.cmd = Some(Cow::Borrowed(s))
                    }
                    (b"n", Scalar::Uint(n)) if raw.n.is_none() => raw.n = Some(n),
                    (b"kernel", Scalar::Str(s)) if raw.kernel.is_none() => {
                        raw.kernel = Some(Cow::Borrowed(s))
                    }
                    (b"timing", Scalar::Bool(b)) if raw.timing.is_none() => raw.timing = Some(b),
                    (b"id" | b"cmd" | b"n" | b"kernel" | b"timing", _) => return None,
                    // Unknown fields are ignored, as serde (and the original server) do.
                    _ => {}
                }
                match p.get(i) {
                    Some(b',') => i = skip_ws(p, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (skip_ws(p, i) == p.len()).then_some(raw)
    }

    fn skip_ws(p: &[u8], mut i: usize) -> usize {
        while matches!(p.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    /// A string without escapes or control characters (which JSON forbids raw), starting at
    /// its opening quote; other characters, non-ASCII ones included, are taken as they are.
    fn string(text: &str, i: usize) -> Option<(&str, usize)> {
        let p = text.as_bytes();
        if p.get(i) != Some(&b'"') {
            return None;
        }
        let len = p[i + 1..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = i + 1 + len;
        if p[end] != b'"' {
            return None;
        }
        Some((text.get(i + 1..end)?, end + 1))
    }

    fn scalar(text: &str, i: usize) -> Option<(Scalar<'_>, usize)> {
        let p = text.as_bytes();
        match p.get(i)? {
            b'"' => string(text, i).map(|(s, at)| (Scalar::Str(s), at)),
            b't' if p[i..].starts_with(b"true") => Some((Scalar::Bool(true), i + 4)),
            b'f' if p[i..].starts_with(b"false") => Some((Scalar::Bool(false), i + 5)),
            b'0'..=b'9' => {
                let (n, digits) = crate::protocol::json_uint(&p[i..])?;
                // A fraction or exponent makes it a float: serde's to judge.
                if matches!(p.get(i + digits), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                Some((Scalar::Uint(n), i + digits))
            }
            _ => None,
        }
    }
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
        // An integer too large for a u64 reads as an f64, as `5.0` and `1e3` do: only the
        // text tells them apart. The first is out of range; a fraction or an exponent makes a
        // float, which is not an integer whatever its value (`"n": 5.0` is refused, not
        // rounded).
        Some(Value::Number(num)) => {
            let written = n_text(text).unwrap_or_else(|| num.to_string());
            let written = truncate(&written, 64);
            let out_of_range =
                |detail| ErrorReply::new(Some(id.clone()), ErrorCode::NOutOfRange, detail);
            return match integer_sign(written) {
                Some(false) => {
                    out_of_range(format!("`n` = {written} is beyond any kernel's range"))
                }
                Some(true) => out_of_range(format!("`n` must be non-negative, got {written}")),
                None => bad(format!("`n` must be a non-negative integer, got {written}")),
            };
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

/// The text of the request's `n`, as written. `None` when it cannot be cut out (a duplicated
/// `n`, which the caller refuses anyway).
fn n_text(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct N<'a> {
        #[serde(borrow)]
        n: Option<&'a serde_json::value::RawValue>,
    }
    let n = serde_json::from_str::<N>(text).ok()?.n?;
    Some(n.get().to_string())
}

/// Whether `text` is a JSON integer (digits, maybe a minus, no fraction or exponent): its
/// sign, `true` for negative; `None` when it is not an integer. `-0` counts as a float: it
/// is neither negative nor a plain `0`.
fn integer_sign(text: &str) -> Option<bool> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let zero = digits.bytes().all(|b| b == b'0');
    (integer && !(negative && zero)).then_some(negative)
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
        assert_eq!(e.error, ErrorCode::BadRequest);
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

    /// `n` is an integer or it is refused: a float is `bad_request` even when its value is
    /// whole (`5.0`, `1e3`), and only an integer past `u64` (or a negative one) is
    /// `n_out_of_range`. Whether the compact reader or the general one reads it.
    #[test]
    fn a_float_n_is_a_bad_request_and_only_a_too_large_integer_is_out_of_range() {
        for n in [
            "5.0",
            "1e3",
            "1E3",
            "1e+3",
            "0.0",
            "-0.0",
            "-0",
            "1e19",
            "1e300",
            "2.5",
            "-1.5",
            "18446744073709551616.0",
            "1.8446744073709552e19",
        ] {
            for payload in [
                format!(r#"{{"id":7,"cmd":"compute","n":{n},"kernel":"fib"}}"#),
                format!(r#"{{"id": 7, "cmd": "compute", "n": {n}}}"#),
            ] {
                assert!(compact::parse(payload.as_bytes()).is_none(), "{payload}");
                let e = err(&payload);
                assert_eq!(
                    (e.error, &e.id),
                    (ErrorCode::BadRequest, &Some(Id::Num(7))),
                    "{payload}"
                );
                assert!(
                    e.detail.contains("`n` must be a non-negative integer"),
                    "{}",
                    e.detail
                );
                assert!(!e.detail.contains("beyond"), "{}", e.detail);
            }
        }
        for (n, says) in [
            ("18446744073709551616", "beyond any kernel's range"),
            ("99999999999999999999999999", "beyond any kernel's range"),
            ("-5", "non-negative"),
            ("-99999999999999999999999999", "non-negative"),
        ] {
            let payload = format!(r#"{{"id":7,"cmd":"compute","n":{n},"kernel":"fib"}}"#);
            let e = err(&payload);
            assert_eq!(
                (e.error, &e.id),
                (ErrorCode::NOutOfRange, &Some(Id::Num(7))),
                "{payload}"
            );
            assert!(
                e.detail.contains(says) && e.detail.contains(n),
                "{}",
                e.detail
            );
        }
        let huge = format!(r#"{{"id":7,"cmd":"compute","n":{}}}"#, "9".repeat(300));
        let e = err(&huge);
        assert_eq!(e.error, ErrorCode::NOutOfRange);
        assert!(
            e.detail.len() < 200,
            "the detail quotes n cut short: {}",
            e.detail
        );
    }

    /// A field that is there must have its type: `null` is not "absent". A null `n` is not
    /// the 1000000 default, a null `kernel` not `fib`, a null `cmd` not a missing one.
    #[test]
    fn a_null_field_is_a_bad_request_naming_the_field() {
        for (field, payload) in [
            ("cmd", r#"{"id":7,"cmd":null}"#),
            ("n", r#"{"id":7,"cmd":"compute","n":null}"#),
            ("kernel", r#"{"id":7,"cmd":"compute","kernel":null}"#),
            ("timing", r#"{"id":7,"cmd":"ping","timing":null}"#),
            (
                "n",
                r#"{"id": 7, "n": null, "cmd": "compute", "kernel": "fib"}"#,
            ),
            ("timing", r#"{"timing":null,"cmd":"compute","id":7,"n":5}"#),
        ] {
            assert!(compact::parse(payload.as_bytes()).is_none(), "{payload}");
            let e = err(payload);
            assert_eq!(
                (e.error, &e.id),
                (ErrorCode::BadRequest, &Some(Id::Num(7))),
                "{payload}"
            );
            assert!(
                e.detail.contains(&format!("`{field}`")),
                "{payload}: {}",
                e.detail
            );
            assert!(e.detail.contains("null"), "{payload}: {}", e.detail);
            assert!(!e.detail.contains("missing"), "{payload}: {}", e.detail);
        }
        let e = err(r#"{"id":null,"cmd":"ping"}"#);
        assert_eq!((e.error, e.id), (ErrorCode::BadRequest, None));
        assert!(
            e.detail.contains("`id`") && e.detail.contains("null"),
            "{}",
            e.detail
        );
        // Absent is still absent: the defaults apply.
        let r = parse_request(br#"{"id": 7, "cmd": "compute"}"#).unwrap();
        assert_eq!(
            (r.cmd, r.timing),
            (
                Command::Compute {
                    kernel: "fib".into(),
                    n: DEFAULT_N
                },
                false
            )
        );
    }

    #[test]
    fn a_duplicated_key_is_refused_not_guessed() {
        let e = err(r#"{"id": 1, "cmd": "compute", "n": 5, "n": 6}"#);
        assert_eq!((e.error, e.id), (ErrorCode::BadRequest, Some(Id::Num(1))));
        assert!(e.detail.contains("duplicate"), "{}", e.detail);
    }

    /// The flat reader either gives up or reads a payload exactly as serde's derived `Raw`
    /// does; and it does not give up on the shapes real clients send.
    #[test]
    fn the_flat_reader_agrees_with_serde_or_gives_up() {
        let cases = [
            // Taken by the flat reader.
            (r#"{"id":7,"cmd":"ping","timing":true}"#, true),
            (
                r#"{"id":12,"cmd":"compute","n":500000,"kernel":"fib","timing":true}"#,
                true,
            ),
            (
                r#"{"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "cmd": "compute", "n": 30}"#,
                true,
            ),
            (" {\t\"cmd\" :\"ping\" ,\r\n\"id\":0 } \n", true),
            (
                r#"{"id":7,"cmd":"ping","extra":"x","more":18446744073709551615,"b":false}"#,
                true,
            ),
            (r#"{"id":"é☃","cmd":"ping"}"#, true),
            (
                r#"{"id":7,"cmd":"compute","kernel":"fíb","über":"ß"}"#,
                true,
            ),
            ("{\"id\":7,\"cmd\":\"ping\",\"x\":\"\u{7f}\"}", true),
            ("{\"id\":7,\u{a0}\"cmd\":\"ping\"}", false),
            (r#"{}"#, true),
            (r#"{"cmd":"ping"}"#, true),
            (r#"{"id":7,"cmd":"nope"}"#, true),
            (r#"{"id":7,"cmd":1}"#, false),
            // Left to serde.
            (r#"{"id":7,"cmd":"ping","id":8}"#, false),
            (r#"{"id":7,"cmd":"ping","cmd":"ping"}"#, false),
            (r#"{"id":07,"cmd":"ping"}"#, false),
            (r#"{"id":-7,"cmd":"ping"}"#, false),
            (r#"{"id":7.0,"cmd":"ping"}"#, false),
            (r#"{"id":7e0,"cmd":"ping"}"#, false),
            (r#"{"id":18446744073709551616,"cmd":"ping"}"#, false),
            (r#"{"id":"a\"b","cmd":"ping"}"#, false),
            (r#"{"id":"a\u0041","cmd":"ping"}"#, false),
            ("{\"id\":\"a\tb\",\"cmd\":\"ping\"}", false),
            (r#"{"id":7,"cmd":"ping","n":null}"#, false),
            (r#"{"id":7,"cmd":"ping","x":[1]}"#, false),
            (r#"{"id":7,"cmd":"ping","x":{}}"#, false),
            (r#"{"id":7,"cmd":"ping",}"#, false),
            (r#"{"id":7,"cmd":"ping"}x"#, false),
            (r#"{"id":7,"cmd":"ping"}{}"#, false),
            (r#"{"id":7 "cmd":"ping"}"#, false),
            (r#"{"id":7,"cmd":"ping""#, false),
            (r#"[7]"#, false),
            (r#"{"id":7,"timing":"yes","cmd":"ping"}"#, false),
            (r#"{"id":7,"cmd":"ping","timing":truex}"#, false),
        ];
        for (text, taken) in cases {
            let fast = flat::parse(text);
            assert_eq!(fast.is_some(), taken, "{text}");
            if let Some(raw) = fast {
                let typed: Raw = serde_json::from_str(text).expect("serde reads it too");
                assert_eq!(from_raw(raw), from_raw(typed), "{text}");
            }
        }
    }

    /// The compact layout the driver writes, with the given parts.
    fn compact_text(id: u64, compute: Option<(u64, &str)>, timing: bool) -> String {
        let cmd = match compute {
            None => r#""cmd":"ping""#.to_string(),
            Some((n, kernel)) => format!(r#""cmd":"compute","n":{n},"kernel":"{kernel}""#),
        };
        let timing = if timing { r#","timing":true"# } else { "" };
        format!(r#"{{"id":{id},{cmd}{timing}}}"#)
    }

    /// Whenever the compact reader takes a payload, the general one reads it the same.
    fn agrees(payload: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Some(fast) = compact::parse(payload) {
            proptest::prop_assert_eq!(
                parse_general(payload),
                Ok(fast),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn the_drivers_layout_reads_as_the_general_reader_reads_it(
            id: u64,
            n: u64,
            kernel in "[a-z0-9_.:-]{1,16}",
            compute: bool,
            timing: bool,
        ) {
            let text = compact_text(id, compute.then_some((n, kernel.as_str())), timing);
            proptest::prop_assert!(compact::parse(text.as_bytes()).is_some(), "{}", text);
            agrees(text.as_bytes())?;
        }

        #[test]
        fn the_compact_reader_takes_nothing_the_general_one_reads_otherwise(
            id: u64,
            compute: bool,
            timing: bool,
            at in 0usize..80,
            byte: u8,
            how in 0u8..3,
        ) {
            let mut bytes = compact_text(id, compute.then_some((500, "fib")), timing).into_bytes();
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
            agrees(&bytes)?;
        }

        #[test]
        fn kernel_names_of_any_printable_bytes_read_alike(
            id: u64,
            name in "[ -~]{0,10}",
            timing: bool,
        ) {
            // Quotes and backslashes included: the name is spliced in raw, so some of these
            // are escapes, broken strings or broken JSON.
            agrees(compact_text(id, Some((5, &name)), timing).as_bytes())?;
        }

        #[test]
        fn arbitrary_bytes_never_read_differently(bytes: Vec<u8>) {
            agrees(&bytes)?;
        }

        /// Any number written as a float, whole or not, in range of a u64 or not, is a
        /// `bad_request`, from the driver's layout or any other.
        #[test]
        fn an_n_written_as_a_float_is_a_bad_request(
            f in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
            exponent: bool,
            compact_layout: bool,
        ) {
            let n = if exponent { format!("{f:e}") } else { format!("{f:?}") };
            let payload = if compact_layout {
                format!(r#"{{"id":7,"cmd":"compute","n":{n},"kernel":"fib"}}"#)
            } else {
                format!(r#"{{"cmd": "compute", "n": {n}, "id": 7}}"#)
            };
            let e = parse_request(payload.as_bytes());
            proptest::prop_assert_eq!(e.map_err(|e| e.error), Err(ErrorCode::BadRequest), "{}", payload);
        }
    }

    #[test]
    fn the_compact_reader_leaves_every_other_shape_to_the_general_one() {
        for text in [
            r#"{"id":07,"cmd":"ping"}"#,
            r#"{"id":7.0,"cmd":"ping"}"#,
            r#"{"id":123456789012345678901,"cmd":"ping"}"#,
            r#"{"id":"7","cmd":"ping"}"#,
            r#"{"id": 7,"cmd":"ping"}"#,
            r#"{"id":7,"cmd":"ping"} "#,
            r#"{"id":7,"cmd":"ping","timing":false}"#,
            r#"{"id":7,"cmd":"ping","x":1}"#,
            r#"{"cmd":"ping","id":7}"#,
            r#"{"id":7,"cmd":"compute","n":1.5,"kernel":"fib"}"#,
            r#"{"id":7,"cmd":"compute","n":5,"kernel":"fi"b"}"#,
            r#"{"id":7,"cmd":"compute","n":5,"kernel":"fi b"}"#,
            r#"{"id":7,"cmd":"compute","n":5}"#,
            r#"{"id":7,"cmd":"compute","kernel":"fib","n":5}"#,
        ] {
            assert!(compact::parse(text.as_bytes()).is_none(), "{text}");
        }
    }

    /// The driver's own requests, as its encoder writes them, are the ones the compact reader
    /// is for: if the two layouts drift apart, this fails rather than the fast path going
    /// quietly unused.
    #[test]
    fn the_drivers_requests_take_the_compact_path() {
        use crate::kernel::Kernel;
        use crate::load::verify::Encoder;
        use crate::load::{Cmd, LoadSpec};
        let specs = [
            LoadSpec {
                cmd: Cmd::Ping,
                ..LoadSpec::default()
            },
            LoadSpec {
                cmd: Cmd::Ping,
                timing: false,
                ..LoadSpec::default()
            },
            LoadSpec {
                mix: vec![(Kernel::Fib, 3), (Kernel::Alloc, 1)],
                size: 4992,
                ..LoadSpec::default()
            },
            LoadSpec {
                timing: false,
                ..LoadSpec::default()
            },
        ];
        for spec in specs {
            let encoder = Encoder::new(&spec);
            for entry in 0..spec.mix.len().max(1) {
                let mut out = Vec::new();
                encoder.encode(entry, u64::MAX - 3, &mut out);
                let payload = &out[crate::connection::HEADER..];
                let fast = compact::parse(payload);
                assert!(fast.is_some(), "{}", String::from_utf8_lossy(payload));
                assert_eq!(fast.unwrap().timing, spec.timing);
            }
        }
    }
}
