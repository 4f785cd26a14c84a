//! The CI fuzz pass: property tests for the two parsers a client's bytes reach first, the frame
//! decoder (fed in arbitrary chunks, through the async and the blocking reader) and request
//! parsing (arbitrary bytes and JSON). Bounded case counts keep it to a few seconds;
//! `THREADCENTER_FULL=1` runs 20,000 cases each, and `PROPTEST_CASES=N` any number.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use threadcenter::connection::{
    put_frame, BlockingFrameReader, FrameError, FrameReader, ReadLimits,
};
use threadcenter::protocol::{
    parse_request, ClientReply, Command, ErrorCode, Id, Reply, Request, Timings, DEFAULT_N,
    MAX_ID_LEN,
};
use tokio::io::{AsyncRead, ReadBuf};

fn config() -> ProptestConfig {
    let full = std::env::var("THREADCENTER_FULL").is_ok_and(|v| v == "1");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20_000 } else { 256 });
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The frame decoder.

/// A reader that hands out its bytes in the given chunk sizes (cycled), returning `Pending`
/// before every chunk, the way a socket delivers a stream in arbitrary segments.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    next: usize,
    ready: bool,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.ready {
            this.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.ready = false;
        buf.put_slice(this.next_chunk(buf.remaining()));
        Poll::Ready(Ok(()))
    }
}

/// The same stream for the worker's blocking reader: no `Pending`, the chunks alone.
impl std::io::Read for Chunked {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let chunk = self.next_chunk(out.len());
        out[..chunk.len()].copy_from_slice(chunk);
        Ok(chunk.len())
    }
}

impl Chunked {
    fn new(data: Vec<u8>, sizes: Vec<usize>) -> Self {
        Chunked {
            data,
            at: 0,
            sizes,
            next: 0,
            ready: false,
        }
    }

    /// The next chunk of at most `room` bytes.
    fn next_chunk(&mut self, room: usize) -> &[u8] {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = size.min(room).min(self.data.len() - self.at);
        self.at += n;
        &self.data[self.at - n..self.at]
    }
}

/// What decoding a byte stream must give: the frames, then how it ends.
#[derive(Debug, PartialEq)]
enum Ending {
    Clean,
    TooLarge(u64),
    Truncated(usize),
}

/// The decoder's contract, written the simple way over the whole stream at once.
fn reference(mut wire: &[u8], max: usize) -> (Vec<Vec<u8>>, Ending) {
    let mut frames = Vec::new();
    loop {
        if wire.is_empty() {
            return (frames, Ending::Clean);
        }
        if wire.len() < 4 {
            return (frames, Ending::Truncated(wire.len()));
        }
        let len = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as u64;
        if len > max as u64 {
            return (frames, Ending::TooLarge(len));
        }
        let len = len as usize;
        if wire.len() < 4 + len {
            return (frames, Ending::Truncated(wire.len()));
        }
        frames.push(wire[4..4 + len].to_vec());
        wire = &wire[4 + len..];
    }
}

fn decode(wire: Vec<u8>, max: usize, sizes: Vec<usize>) -> (Vec<Vec<u8>>, Ending) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut frames = FrameReader::new(Chunked::new(wire, sizes), max);
        // Generous limits: present, so their code paths run, but never reached.
        let limits = ReadLimits {
            idle: Some(Duration::from_secs(3600)),
            frame: Some(Duration::from_secs(3600)),
        };
        let mut out = Vec::new();
        loop {
            match frames.read_frame(limits).await {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => return (out, Ending::Clean),
                Err(e) => return (out, ending(e)),
            }
        }
    })
}

/// The same stream through the worker's blocking reader.
fn decode_blocking(wire: Vec<u8>, max: usize, sizes: Vec<usize>) -> (Vec<Vec<u8>>, Ending) {
    let mut frames = BlockingFrameReader::new(Chunked::new(wire, sizes), max);
    let mut out = Vec::new();
    loop {
        match frames.read_frame() {
            Ok(Some(f)) => out.push(f.to_vec()),
            Ok(None) => return (out, Ending::Clean),
            Err(e) => return (out, ending(e)),
        }
    }
}

fn ending(e: FrameError) -> Ending {
    match e {
        FrameError::TooLarge { declared, .. } => Ending::TooLarge(declared),
        FrameError::Truncated(n) => Ending::Truncated(n),
        e => panic!("unexpected decoder error {e}"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn well_formed_frames_decode_the_same_in_any_chunking(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        max in 0usize..400,
        sizes in prop::collection::vec(1usize..80, 1..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        for p in &payloads {
            put_frame(&mut wire, p);
        }
        if truncate {
            wire.truncate(cut.index(wire.len() + 1));
        }
        let expected = reference(&wire, max);
        prop_assert_eq!(&decode(wire.clone(), max, sizes.clone()), &expected);
        prop_assert_eq!(&decode_blocking(wire, max, sizes), &expected);
    }

    #[test]
    fn arbitrary_bytes_decode_as_the_reference_says(
        wire in prop::collection::vec(any::<u8>(), 0..2000),
        max in 0usize..70_000,
        sizes in prop::collection::vec(1usize..4096, 1..16),
    ) {
        let expected = reference(&wire, max);
        prop_assert_eq!(&decode(wire.clone(), max, sizes.clone()), &expected);
        prop_assert_eq!(&decode_blocking(wire, max, sizes), &expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Request parsing.

/// The codes a payload alone can earn; anything else would mean the parser judged more than
/// the payload.
const CONTENT_CODES: [ErrorCode; 5] = [
    ErrorCode::BadJson,
    ErrorCode::BadRequest,
    ErrorCode::UnknownCmd,
    ErrorCode::NOutOfRange,
    ErrorCode::IdTooLong,
];

fn check_parse(payload: &[u8]) -> Result<(), TestCaseError> {
    match parse_request(payload) {
        Ok(req) => {
            if let Id::Str(s) = &req.id {
                prop_assert!(s.len() <= MAX_ID_LEN);
            }
        }
        Err(e) => {
            prop_assert!(CONTENT_CODES.contains(&e.error), "{:?}", e);
            prop_assert!(!e.detail.is_empty());
        }
    }
    Ok(())
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly the request's own field names, so the values land where the parser looks.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["id", "cmd", "n", "kernel", "timing"]).prop_map(String::from),
        1 => "[a-z]{1,6}",
    ]
}

/// A valid request and a JSON encoding of it, defaults sometimes spelled out and sometimes
/// left out, with unknown fields added.
fn request() -> impl Strategy<Value = (Request, Value)> {
    let id = prop_oneof![
        any::<u64>().prop_map(Id::Num),
        ".{0,40}"
            .prop_filter("id within the limit", |s: &String| s.len() <= MAX_ID_LEN)
            .prop_map(Id::Str),
    ];
    let cmd = prop_oneof![
        Just(Command::Ping),
        (".{0,12}", any::<u64>()).prop_map(|(kernel, n)| Command::Compute { kernel, n }),
    ];
    let extra = prop::collection::vec(("x[a-z]{0,5}", json_value()), 0..3);
    (id, cmd, any::<bool>(), any::<[bool; 3]>(), extra).prop_map(
        |(id, cmd, timing, spell, extra)| {
            let mut obj = Map::new();
            obj.insert("id".into(), serde_json::to_value(&id).expect("id"));
            match &cmd {
                Command::Ping => {
                    obj.insert("cmd".into(), json!("ping"));
                }
                Command::Compute { kernel, n } => {
                    obj.insert("cmd".into(), json!("compute"));
                    if kernel != "fib" || spell[0] {
                        obj.insert("kernel".into(), json!(kernel));
                    }
                    if *n != DEFAULT_N || spell[1] {
                        obj.insert("n".into(), json!(n));
                    }
                }
            }
            if timing || spell[2] {
                obj.insert("timing".into(), json!(timing));
            }
            for (k, v) in extra {
                obj.insert(k, v);
            }
            (Request { id, cmd, timing }, Value::Object(obj))
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_get_a_content_code(
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check_parse(&payload)?;
    }

    #[test]
    fn arbitrary_json_never_panics_and_gets_a_content_code(v in json_value()) {
        check_parse(v.to_string().as_bytes())?;
    }

    #[test]
    fn mangled_json_never_panics(v in json_value(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut text = v.to_string().into_bytes();
        let at = cut.index(text.len() + 1);
        text.insert(at, byte);
        check_parse(&text)?;
        text.truncate(at);
        check_parse(&text)?;
    }

    #[test]
    fn well_formed_requests_round_trip((req, v) in request(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).expect("json")
        } else {
            v.to_string()
        };
        prop_assert_eq!(parse_request(text.as_bytes()), Ok(req));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_refused_with_the_id((req, v) in request(), field in prop::sample::select(vec!["cmd", "kernel", "timing"])) {
        let mut v = v;
        v[field] = json!([1]);
        let e = parse_request(v.to_string().as_bytes()).expect_err("wrong type");
        prop_assert_eq!(e.error, ErrorCode::BadRequest);
        prop_assert_eq!(e.id, Some(req.id));
    }

    #[test]
    fn replies_encode_to_what_clients_parse(
        id in prop_oneof![any::<u64>().prop_map(Id::Num), ".{0,40}".prop_map(Id::Str)],
        result in any::<u64>(),
        timed in any::<bool>(),
    ) {
        let t = timed.then_some(Timings { queue_us: 1.5, compute_us: 2.0, server_us: 4.25 });
        let mut out = Vec::new();
        Reply::Result { id: id.clone(), result, t }.encode_into(&mut out);
        let back: ClientReply = serde_json::from_slice(&out).expect("client parse");
        prop_assert_eq!(back.id_string(), Some(id.to_string()));
        prop_assert_eq!(back.result, Some(result));
        prop_assert_eq!(back.t, t);
    }
}
