//! Fuzzing the broker frame decoders (`decode_client`, `decode_server`) inside `cargo test`:
//! arbitrary bytes, arbitrary JSON, byte-level and structural mutations of the seed corpus in
//! `tests/corpus/{client_frames,server_frames}/`, and deep nesting never panic and always get
//! the error the input deserves, and every frame a decoder accepts re-encodes to itself.
//! `CLAUDEMESH_FUZZ_CASES=N` runs longer; `CLAUDEMESH_FUZZ_WRITE_CORPUS=1` rewrites the `ok-`
//! seeds from the samples in `tests/common`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fuzzing;

use std::fmt::Debug;
use std::sync::{Arc, LazyLock};

use claudemesh_protocol::frames::*;
use claudemesh_protocol::limits::MAX_FRAME_BYTES;
use fuzzing::*;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// One direction: its decoder, its frame type and its corpus.
trait Side {
    type Frame: serde::Serialize + PartialEq + Debug;
    const DIR: &'static str;
    const TYPES: &'static [&'static str];
    fn decode(text: &str) -> Result<Self::Frame, DecodeError>;
    /// One sample of every frame, with its type name.
    fn samples() -> Vec<(&'static str, Self::Frame)>;
}

struct Client;
struct Server;

impl Side for Client {
    type Frame = ClientFrame;
    const DIR: &'static str = "client_frames";
    const TYPES: &'static [&'static str] = CLIENT_TYPES;
    fn decode(text: &str) -> Result<ClientFrame, DecodeError> {
        decode_client(text)
    }
    fn samples() -> Vec<(&'static str, ClientFrame)> {
        common::all_client().into_iter().map(|f| (f.type_name(), f)).collect()
    }
}

impl Side for Server {
    type Frame = ServerFrame;
    const DIR: &'static str = "server_frames";
    const TYPES: &'static [&'static str] = SERVER_TYPES;
    fn decode(text: &str) -> Result<ServerFrame, DecodeError> {
        decode_server(text)
    }
    fn samples() -> Vec<(&'static str, ServerFrame)> {
        let events = common::all_events().into_iter().map(|e| ("event", ServerFrame::Event(e)));
        common::all_server().into_iter().map(|f| (f.type_name(), f)).chain(events).collect()
    }
}

static CLIENT_SEEDS: LazyLock<Arc<Vec<Seed>>> = LazyLock::new(|| Arc::new(corpus(Client::DIR)));
static SERVER_SEEDS: LazyLock<Arc<Vec<Seed>>> = LazyLock::new(|| Arc::new(corpus(Server::DIR)));

/// The seeds that are JSON, parsed, for structural edits; and every key they use.
fn documents(seeds: &[Seed]) -> Docs {
    let docs: Vec<Value> = seeds.iter().filter_map(|s| serde_json::from_slice(&s.bytes).ok()).collect();
    let mut keys = Vec::new();
    docs.iter().for_each(|d| keys_of(d, &mut keys));
    keys.sort();
    keys.dedup();
    (Arc::new(docs), Arc::new(keys))
}

static CLIENT_DOCS: LazyLock<Docs> = LazyLock::new(|| documents(&CLIENT_SEEDS));
static SERVER_DOCS: LazyLock<Docs> = LazyLock::new(|| documents(&SERVER_SEEDS));

/// Whether `text` is a JSON object as far as its first character says.
fn looks_like_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{')
}

/// Decodes `bytes` (as the WebSocket layer would hand them over: text) on side `S` and checks
/// the outcome: an accepted frame was an object and re-encodes to itself; a refused one got the
/// error its input deserves. Returns whether it was accepted.
fn check<S: Side>(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    match S::decode(&text) {
        Ok(frame) => {
            assert!(looks_like_object(&text), "a frame that is no JSON object was accepted: {text:?}");
            let again = encode(&frame);
            let back = S::decode(&again);
            if has_float(&text) {
                assert!(back.is_ok(), "{text:?} re-encoded as {again:?}: {back:?}");
            } else {
                assert_eq!(back.as_ref(), Ok(&frame), "{text:?} re-encoded as {again:?}");
            }
            true
        }
        Err(e) => {
            check_error::<S>(&text, &e);
            false
        }
    }
}

/// The error is the one the input deserves, with the `type` and `req` it carried.
fn check_error<S: Side>(text: &str, e: &DecodeError) {
    if text.len() > MAX_FRAME_BYTES {
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e:?}");
        return;
    }
    let v = serde_json::from_str::<Value>(text);
    let ty = v.as_ref().ok().and_then(|v| v.get("type")).and_then(Value::as_str);
    let req = v.as_ref().ok().and_then(|v| v.get("req")).and_then(Value::as_u64);
    match e {
        DecodeError::NotJson(_) => assert!(v.is_err(), "{text:?} is JSON but got {e:?}"),
        DecodeError::MissingType => assert!(v.is_ok() && ty.is_none(), "{text:?} got {e:?}"),
        DecodeError::UnknownType { ty: t, req: r } => {
            assert_eq!((Some(t.as_str()), *r), (ty, req), "{text:?}");
            assert!(!S::TYPES.contains(&t.as_str()), "{t} is known");
        }
        DecodeError::Invalid { ty: t, req: r, .. } => {
            assert_eq!((Some(t.as_str()), *r), (ty, req), "{text:?}");
            assert!(S::TYPES.contains(&t.as_str()), "{t} is unknown");
        }
        DecodeError::TooLarge { .. } => panic!("{} bytes is not too large", text.len()),
    }
    assert_eq!(e.req(), req.filter(|_| ty.is_some()), "{e:?}");
    let reply = encode(&e.to_error_frame());
    assert!(decode_server(&reply).is_ok(), "the error frame for {e:?} does not decode: {reply}");
}

/// Every seed: `ok-` ones are accepted, `err-` ones refused, all checked.
fn replay<S: Side>(seeds: &[Seed]) {
    let mut types = std::collections::BTreeSet::new();
    for s in seeds {
        let accepted = check::<S>(&s.bytes);
        assert!(!s.valid() || accepted, "{}/{} was refused", S::DIR, s.name);
        assert!(!s.invalid() || !accepted, "{}/{} was accepted", S::DIR, s.name);
        if s.valid() {
            let v: Value = serde_json::from_slice(&s.bytes).unwrap();
            types.insert(v["type"].as_str().unwrap_or_default().to_string());
        }
    }
    let missing: Vec<_> = S::TYPES.iter().filter(|t| !types.contains(**t)).collect();
    assert!(missing.is_empty(), "{}: no ok- seed of {missing:?}", S::DIR);
}

/// With `CLAUDEMESH_FUZZ_WRITE_CORPUS=1`, writes one `ok-` seed per sample frame.
fn write_corpus<S: Side>() {
    if std::env::var_os("CLAUDEMESH_FUZZ_WRITE_CORPUS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(S::DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for (ty, frame) in S::samples() {
        let n = seen.entry(ty).or_default();
        *n += 1;
        let name = if *n == 1 { format!("ok-{ty}.json") } else { format!("ok-{ty}-{n}.json") };
        std::fs::write(dir.join(name), encode(&frame)).unwrap();
    }
}

#[test]
fn the_corpus_covers_every_frame_and_replays() {
    write_corpus::<Client>();
    write_corpus::<Server>();
    replay::<Client>(&corpus(Client::DIR));
    replay::<Server>(&corpus(Server::DIR));
}

#[test]
fn nesting_far_past_the_limit_is_an_error_not_a_stack_overflow() {
    for depth in [127, 128, 10_000, 200_000] {
        for objects in [false, true] {
            let text = nest(r#"{"type":"ok","req":1}"#, depth, objects);
            let e = decode_server(&text).unwrap_err();
            let want_json = depth < 127;
            assert_eq!(matches!(e, DecodeError::MissingType), want_json, "{depth} {objects}: {e:?}");
            assert_eq!(matches!(e, DecodeError::NotJson(_)), !want_json, "{depth} {objects}: {e:?}");
            let inside = format!(r#"{{"type":"list_peers","req":2,"x":{}}}"#, nest("1", depth, objects));
            assert!(decode_client(&inside).is_ok() == (depth < 127), "{depth} {objects}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check::<Client>(&bytes);
        check::<Server>(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value(CLIENT_DOCS.1.clone())) {
        let text = v.to_string();
        check::<Client>(text.as_bytes());
        check::<Server>(text.as_bytes());
    }

    #[test]
    fn mutated_client_frames(bytes in mutated(CLIENT_SEEDS.clone(), JSON_TOKENS)) {
        check::<Client>(&bytes);
    }

    #[test]
    fn mutated_server_frames(bytes in mutated(SERVER_SEEDS.clone(), JSON_TOKENS)) {
        check::<Server>(&bytes);
    }

    #[test]
    fn edited_client_frames(i in any::<Index>(), e in edits(CLIENT_DOCS.1.clone())) {
        let docs = &CLIENT_DOCS.0;
        check::<Client>(apply_edits(docs[i.index(docs.len())].clone(), &e).to_string().as_bytes());
    }

    #[test]
    fn edited_server_frames(i in any::<Index>(), e in edits(SERVER_DOCS.1.clone())) {
        let docs = &SERVER_DOCS.0;
        check::<Server>(apply_edits(docs[i.index(docs.len())].clone(), &e).to_string().as_bytes());
    }

    #[test]
    fn nested_frames_never_panic(i in any::<Index>(), depth in 0..300usize, objects in any::<bool>()) {
        let seeds = &CLIENT_SEEDS;
        let seed = String::from_utf8_lossy(&seeds[i.index(seeds.len())].bytes).into_owned();
        check::<Client>(nest(&seed, depth, objects).as_bytes());
        check::<Server>(nest(&seed, depth, objects).as_bytes());
    }
}
