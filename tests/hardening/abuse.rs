//! Content abuse: well-framed payloads that are not valid requests. Each gets its error code
//! (with the id whenever it could be read) and the connection keeps working.

use crate::common::hostile::*;
use crate::common::*;
use serde_json::{json, Value};
use threadcenter::kernel::Kernel;
use threadcenter::protocol::MAX_ID_LEN;

/// The code of a case that must be served (a pong).
const SERVED: &str = "";
/// The code of a case inside a field the server ignores: whether the parser skips it (served)
/// or hits its depth limit on the way (`bad_json`) is the parser's business; either way the
/// server answers and stays up.
const SKIPPED: &str = "served or bad_json";

/// A payload, the error code it must get, and the id the error must carry.
struct Case {
    what: &'static str,
    payload: Vec<u8>,
    code: &'static str,
    id: Value,
}

fn case(what: &'static str, payload: impl Into<Vec<u8>>, code: &'static str, id: Value) -> Case {
    Case {
        what,
        payload: payload.into(),
        code,
        id,
    }
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!(
        r#"{{"id": 1, "cmd": "ping", "x": {}{}}}"#,
        open.repeat(depth),
        close.repeat(depth)
    )
}

fn cases() -> Vec<Case> {
    let null = Value::Null;
    let over_limit = "x".repeat(MAX_ID_LEN + 1);
    // 86 three-byte characters: 86 characters but 258 bytes, over a limit counted in bytes.
    let wide = "€".repeat(86);
    let many_keys: String = (0..2000).map(|i| format!(r#","k{i}": {i}"#)).collect();
    vec![
        // Not UTF-8 at all, in several ways.
        case(
            "lone continuation byte",
            vec![b'{', 0x80, b'}'],
            "bad_json",
            null.clone(),
        ),
        case(
            "overlong NUL",
            b"{\"id\": \"\xC0\x80\"}".to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "UTF-8-encoded surrogate",
            b"{\"id\": \"\xED\xA0\x80\"}".to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "truncated sequence",
            b"{\"id\": \"\xE2\x82\"}".to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "invalid byte in id",
            b"{\"id\": \"a\xFFb\", \"cmd\": \"ping\"}".to_vec(),
            "bad_json",
            null.clone(),
        ),
        // Escapes that decode to no character.
        case(
            "lone high surrogate id",
            br#"{"id": "\ud800", "cmd": "ping"}"#.to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "lone low surrogate cmd",
            br#"{"id": 3, "cmd": "\udc00"}"#.to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "reversed surrogate pair",
            br#"{"id": "\udc00\ud800", "cmd": "ping"}"#.to_vec(),
            "bad_json",
            null.clone(),
        ),
        // Nesting far past any sane depth. Where a field is read, the parser's depth limit
        // refuses it; an unknown field is skipped without recursion, so it is served.
        case(
            "id nested 10,000 deep",
            format!(
                r#"{{"id": {}1{}, "cmd": "ping"}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            ),
            "bad_json",
            null.clone(),
        ),
        case(
            "n nested 10,000 deep",
            format!(
                r#"{{"id": 2, "cmd": "compute", "n": {}}}"#,
                r#"{"a":"#.repeat(10_000)
            ),
            "bad_json",
            null.clone(),
        ),
        case("bare nesting", "[".repeat(10_000), "bad_json", null.clone()),
        case(
            "unknown field 10,000 deep",
            nested(10_000, "[", "]"),
            SKIPPED,
            json!(1),
        ),
        case(
            "unknown field of objects 10,000 deep",
            nested(10_000, r#"{"a":"#, "}"),
            SKIPPED,
            json!(1),
        ),
        // Numbers out of range or of the wrong type.
        case(
            "n past u64",
            r#"{"id": 10, "cmd": "compute", "n": 18446744073709551616}"#,
            "n_out_of_range",
            json!(10),
        ),
        case(
            "n negative",
            r#"{"id": 11, "cmd": "compute", "n": -5}"#,
            "n_out_of_range",
            json!(11),
        ),
        // A float is not an integer, whole or not, in range of a u64 or not.
        case(
            "n as a float exponent",
            r#"{"id": 12, "cmd": "compute", "n": 1e19}"#,
            "bad_request",
            json!(12),
        ),
        case(
            "n a whole float",
            r#"{"id": 25, "cmd": "compute", "n": 5.0}"#,
            "bad_request",
            json!(25),
        ),
        case(
            "n a small exponent",
            r#"{"id": 26, "cmd": "compute", "n": 1e3}"#,
            "bad_request",
            json!(26),
        ),
        case(
            "n a float in the driver's layout",
            r#"{"id":27,"cmd":"compute","n":5.0,"kernel":"fib"}"#,
            "bad_request",
            json!(27),
        ),
        case(
            "n an integer far past u64",
            r#"{"id": 28, "cmd": "compute", "n": 123456789012345678901234567890}"#,
            "n_out_of_range",
            json!(28),
        ),
        case(
            "n past the kernel",
            r#"{"id": 13, "cmd": "compute", "kernel": "sleep", "n": 10000001}"#,
            "n_out_of_range",
            json!(13),
        ),
        case(
            "n fractional",
            r#"{"id": 14, "cmd": "compute", "n": 2.5}"#,
            "bad_request",
            json!(14),
        ),
        case(
            "n a string",
            r#"{"id": 15, "cmd": "compute", "n": "7"}"#,
            "bad_request",
            json!(15),
        ),
        case(
            "n a boolean",
            r#"{"id": 16, "cmd": "compute", "n": true}"#,
            "bad_request",
            json!(16),
        ),
        case(
            "n an object",
            r#"{"id": 17, "cmd": "compute", "n": {"v": 1}}"#,
            "bad_request",
            json!(17),
        ),
        case(
            "n beyond f64",
            r#"{"id": 18, "cmd": "compute", "n": 1e400}"#,
            "bad_json",
            null.clone(),
        ),
        case(
            "id negative",
            r#"{"id": -1, "cmd": "ping"}"#,
            "bad_request",
            null.clone(),
        ),
        case(
            "id fractional",
            r#"{"id": 1.5, "cmd": "ping"}"#,
            "bad_request",
            null.clone(),
        ),
        case(
            "id past u64",
            r#"{"id": 18446744073709551616, "cmd": "ping"}"#,
            "bad_request",
            null.clone(),
        ),
        case(
            "id an array",
            r#"{"id": [1], "cmd": "ping"}"#,
            "bad_request",
            null.clone(),
        ),
        case(
            "id null",
            r#"{"id": null, "cmd": "ping"}"#,
            "bad_request",
            null.clone(),
        ),
        // A field that is there must have its type: null is not "absent".
        case(
            "cmd null",
            r#"{"id": 33, "cmd": null}"#,
            "bad_request",
            json!(33),
        ),
        case(
            "n null",
            r#"{"id": 34, "cmd": "compute", "n": null}"#,
            "bad_request",
            json!(34),
        ),
        case(
            "kernel null",
            r#"{"id": 35, "cmd": "compute", "n": 10, "kernel": null}"#,
            "bad_request",
            json!(35),
        ),
        case(
            "timing null",
            r#"{"id": 36, "cmd": "ping", "timing": null}"#,
            "bad_request",
            json!(36),
        ),
        case(
            "cmd a number",
            r#"{"id": 20, "cmd": 1}"#,
            "bad_request",
            json!(20),
        ),
        case(
            "cmd in capitals",
            r#"{"id": 21, "cmd": "PING"}"#,
            "unknown_cmd",
            json!(21),
        ),
        case(
            "kernel a number",
            r#"{"id": 22, "cmd": "compute", "kernel": 3}"#,
            "bad_request",
            json!(22),
        ),
        case(
            "kernel unknown",
            r#"{"id": 23, "cmd": "compute", "kernel": "fib\u0000"}"#,
            "unknown_kernel",
            json!(23),
        ),
        case(
            "timing a string",
            r#"{"id": 24, "cmd": "ping", "timing": "yes"}"#,
            "bad_request",
            json!(24),
        ),
        // Duplicate keys: refused rather than resolved by guessing.
        case(
            "duplicate n",
            r#"{"id": 30, "cmd": "compute", "n": 1, "n": 2}"#,
            "bad_request",
            json!(30),
        ),
        case(
            "duplicate cmd",
            r#"{"id": 31, "cmd": "ping", "cmd": "compute"}"#,
            "bad_request",
            json!(31),
        ),
        case(
            "duplicate id",
            r#"{"id": 32, "id": 32, "cmd": "ping"}"#,
            "bad_request",
            json!(32),
        ),
        // Ids over the length limit, counted in bytes.
        case(
            "id one byte over",
            format!(r#"{{"id": "{over_limit}", "cmd": "ping"}}"#),
            "id_too_long",
            null.clone(),
        ),
        case(
            "id of wide characters",
            format!(r#"{{"id": "{wide}", "cmd": "ping"}}"#),
            "id_too_long",
            null.clone(),
        ),
        // Not one JSON object.
        case("empty payload", Vec::new(), "bad_json", null.clone()),
        case("whitespace", "   \n\t ", "bad_json", null.clone()),
        case("null", "null", "bad_request", null.clone()),
        case("a string", r#""ping""#, "bad_request", null.clone()),
        case(
            "two objects",
            r#"{"id": 1, "cmd": "ping"}{"id": 2, "cmd": "ping"}"#,
            "bad_json",
            null.clone(),
        ),
        case(
            "trailing garbage",
            r#"{"id": 1, "cmd": "ping"} x"#,
            "bad_json",
            null.clone(),
        ),
        case(
            "byte-order mark",
            b"\xEF\xBB\xBF{\"id\": 1, \"cmd\": \"ping\"}".to_vec(),
            "bad_json",
            null.clone(),
        ),
        case(
            "raw NUL bytes",
            b"\0\0\0\0".to_vec(),
            "bad_json",
            null.clone(),
        ),
        // Valid, though odd: must be served, not refused.
        case(
            "2,000 unknown keys",
            format!(r#"{{"id": 40, "cmd": "ping"{many_keys}}}"#),
            SERVED,
            json!(40),
        ),
        case(
            "id of exactly the limit",
            format!(r#"{{"id": "{}", "cmd": "ping"}}"#, "y".repeat(MAX_ID_LEN)),
            SERVED,
            json!("y".repeat(MAX_ID_LEN)),
        ),
        case(
            "escaped id",
            r#"{"id": "a\"\\\/\n\u00e9\ud83d\ude00", "cmd": "ping"}"#,
            SERVED,
            json!("a\"\\/\né😀"),
        ),
    ]
}

#[test]
fn content_abuse_gets_its_error_code_and_the_connection_keeps_working() {
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 1, &[]).start();
        let mut c = server.connect();
        for (i, k) in cases().into_iter().enumerate() {
            c.send_raw(&k.payload);
            let r = c
                .recv()
                .unwrap_or_else(|| panic!("{backend}: closed after {}", k.what));
            let (code, id) = if k.code == SKIPPED && r["error"] == json!("bad_json") {
                ("bad_json", Value::Null)
            } else {
                (k.code, k.id)
            };
            if code == SERVED || code == SKIPPED {
                assert_eq!(r["pong"], json!(true), "{backend}: {}: {r}", k.what);
            } else {
                assert_eq!(r["error"], json!(code), "{backend}: {}: {r}", k.what);
                let detail = r["detail"].as_str().unwrap_or_default();
                assert!(!detail.is_empty(), "{backend}: {}: {r}", k.what);
            }
            assert_eq!(r["id"], id, "{backend}: {}: {r}", k.what);
            // The same connection still serves real work.
            let n = 100 + i as u64;
            let ok = c.compute(1_000_000 + i as u64, "fib", n);
            assert_eq!(
                json_u64(&ok, "result"),
                Kernel::Fib.expected(n),
                "{backend}"
            );
        }
    });
}

#[test]
fn duplicate_in_flight_ids_are_refused_and_the_first_job_is_unaffected() {
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 2, &[]).start();
        let mut c = server.connect();
        // Sent in one write so that the server reads all of them before answering any.
        let mut wire = Vec::new();
        for req in [
            json!({"id": "dup", "cmd": "compute", "kernel": "sleep", "n": 400_000}),
            json!({"id": "dup", "cmd": "compute", "kernel": "fib", "n": 10}),
            json!({"id": "dup", "cmd": "ping"}),
            // The number 7 and the string "7" are different ids.
            json!({"id": 7, "cmd": "compute", "kernel": "fib", "n": 20}),
            json!({"id": "7", "cmd": "compute", "kernel": "fib", "n": 30}),
        ] {
            let p = req.to_string();
            wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
            wire.extend_from_slice(p.as_bytes());
        }
        std::io::Write::write_all(&mut c.stream, &wire).expect("write");
        let replies: Vec<Value> = (0..5).map(|_| c.recv().expect("reply")).collect();
        let of = |id: Value| -> Vec<&Value> { replies.iter().filter(|r| r["id"] == id).collect() };
        let dup = of(json!("dup"));
        assert_eq!(dup.len(), 3, "{backend}: {replies:?}");
        let sleep_result = json!(Kernel::Sleep.expected(400_000));
        let firsts: Vec<_> = dup.iter().filter(|r| r["result"] == sleep_result).collect();
        assert_eq!(firsts.len(), 1, "{backend}: first job lost: {replies:?}");
        let refused = dup.iter().filter(|r| r["error"] == "duplicate_id").count();
        if backend == "prefork" {
            // Prefork computes inline, so the first job has finished before the next frame is
            // read; whether its reply is written by then decides duplicate or not.
            for r in dup.iter().filter(|r| r.get("error").is_some()) {
                assert_eq!(r["error"], json!("duplicate_id"), "{backend}: {r}");
            }
        } else {
            assert_eq!(refused, 2, "{backend}: {replies:?}");
        }
        assert_eq!(
            of(json!(7))[0]["result"],
            json!(Kernel::Fib.expected(20)),
            "{backend}"
        );
        assert_eq!(
            of(json!("7"))[0]["result"],
            json!(Kernel::Fib.expected(30)),
            "{backend}"
        );
        // Once answered, the id is free again.
        let again = c.call(json!({"id": "dup", "cmd": "ping"}));
        assert_eq!(again["pong"], json!(true), "{backend}: {again}");
    });
}
