//! What this crate's fuzz targets (tests/fuzz_*.rs) share: how many cases a property runs
//! (`CLAUDEMESH_FUZZ_CASES`), the seed corpus under `tests/corpus/`, byte-level mutations of
//! seeds and arbitrary or structurally edited JSON values.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::Value;

/// Cases a property runs unless `CLAUDEMESH_FUZZ_CASES` says otherwise: enough to catch shallow
/// bugs on every CI run, few enough that every target together takes seconds in a debug build.
pub const DEFAULT_CASES: u32 = 256;

/// The case count: `CLAUDEMESH_FUZZ_CASES` (for long runs) or [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("CLAUDEMESH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of every fuzz property; failures are kept in the
/// `*.proptest-regressions` file beside the test and replayed first on every run.
pub fn config() -> Config {
    Config { cases: cases(), max_shrink_iters: 4096, ..Config::default() }
}

/// One corpus file.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The file name: `ok-…` must be accepted, `err-…` refused, anything else only must not
    /// crash.
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Seed {
    /// Whether the seed is a valid input (`ok-…`).
    pub fn valid(&self) -> bool {
        self.name.starts_with("ok-")
    }

    /// Whether the seed must be refused (`err-…`).
    pub fn invalid(&self) -> bool {
        self.name.starts_with("err-")
    }
}

/// Every file of `tests/corpus/<dir>/`, by name. An empty or missing corpus fails the test.
pub fn corpus(dir: &str) -> Vec<Seed> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut seeds: Vec<Seed> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| Seed {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect();
    seeds.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(seeds.len() >= 10, "{}: only {} seeds", path.display(), seeds.len());
    seeds
}

/// One edit of a byte string; positions are fractions of its length, so they shrink and fit
/// any seed.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
    /// Repeat the `len` bytes at a position `times` more times.
    Repeat(Index, usize, usize),
    /// Insert a slice of another seed.
    Splice(Index, Index, Index, usize),
}

fn mutation(tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        3 => proptest::sample::select(tokens).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), token).prop_map(|(i, t)| Mutation::Insert(i, t)),
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..32usize, 1..8usize).prop_map(|(i, n, t)| Mutation::Repeat(i, n, t)),
        (any::<Index>(), any::<Index>(), any::<Index>(), 1..64usize)
            .prop_map(|(s, f, t, n)| Mutation::Splice(s, f, t, n)),
    ]
}

/// `pos` of `index` in a string of `len` bytes, the end included.
fn at(index: &Index, len: usize) -> usize {
    index.index(len + 1)
}

/// `bytes` after `mutations`; `seeds` are the source of splices.
pub fn apply(mut bytes: Vec<u8>, mutations: &[Mutation], seeds: &[Seed]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Flip(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
            Mutation::Set(i, b) if len > 0 => bytes[i.index(len)] = *b,
            Mutation::Insert(i, t) => {
                let p = at(i, len);
                bytes.splice(p..p, t.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let p = i.index(len);
                bytes.drain(p..(p + n).min(len));
            }
            Mutation::Truncate(i) => bytes.truncate(at(i, len)),
            Mutation::Repeat(i, n, times) if len > 0 => {
                let p = i.index(len);
                let part = bytes[p..(p + n).min(len)].to_vec();
                let end = p + part.len();
                for _ in 0..*times {
                    bytes.splice(end..end, part.iter().copied());
                }
            }
            Mutation::Splice(s, f, t, n) => {
                let other = &seeds[s.index(seeds.len())].bytes;
                let from = at(f, other.len());
                let part = &other[from..(from + n).min(other.len())];
                let p = at(t, len);
                bytes.splice(p..p, part.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

/// A seed (by index) with a few byte-level mutations; `tokens` are the insertions likely to
/// matter for the format.
pub fn mutated(seeds: Arc<Vec<Seed>>, tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), vec(mutation(tokens), 1..6)).prop_map(move |(i, ms)| {
        let seed = seeds[i.index(seeds.len())].bytes.clone();
        apply(seed, &ms, &seeds)
    })
}

/// Tokens that change the meaning of JSON text.
pub const JSON_TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.1",
    b"\"\\ud800\"",
    b"\\u0000",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\n",
    b" ",
    b"\"type\"",
    b"\"req\"",
    b"{}",
    b"[]",
    b"\"\"",
];

/// Any JSON value, nested a few levels, with keys that are often ones frames use.
pub fn json_value(keys: Arc<Vec<String>>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z_@#]{0,12}".prop_map(Value::from),
    ];
    let key = key(keys);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A key frames use (two times in three) or any string.
fn key(keys: Arc<Vec<String>>) -> BoxedStrategy<String> {
    prop_oneof![
        2 => any::<Index>().prop_map(move |i| keys[i.index(keys.len())].clone()),
        1 => any::<String>(),
    ]
    .boxed()
}

/// Every object key in `v`, recursively.
pub fn keys_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys_of(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys_of(x, out)),
        _ => {}
    }
}

/// A structural edit of a JSON document; the node it touches is picked by index among all of
/// its nodes (the root included).
#[derive(Debug, Clone)]
pub enum Edit {
    /// Put any value in place of the node.
    Replace(Index, Value),
    /// Give a leaf another value of its own kind (string, number, bool): what a valid frame
    /// with other contents looks like.
    Leaf(Index, String, u64, i64),
    /// Remove the node from its parent.
    Remove(Index),
    /// Add (or overwrite) a key of the object node.
    Add(Index, String, Value),
}

/// A few edits with values from [`json_value`].
pub fn edits(keys: Arc<Vec<String>>) -> impl Strategy<Value = Vec<Edit>> {
    let value = json_value(keys.clone());
    let edit = prop_oneof![
        1 => (any::<Index>(), value.clone()).prop_map(|(i, v)| Edit::Replace(i, v)),
        3 => (any::<Index>(), any::<String>(), any::<u64>(), any::<i64>())
            .prop_map(|(i, s, u, n)| Edit::Leaf(i, s, u, n)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), key(keys), value).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
    ];
    vec(edit, 1..4)
}

/// How many nodes `v` has, itself included.
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Object(m) => m.values().map(count).sum(),
        Value::Array(a) => a.iter().map(count).sum(),
        _ => 0,
    }
}

/// Applies one edit to the node at pre-order position `n`.
fn edit_at(v: &mut Value, n: &mut usize, edit: &Edit) -> bool {
    if *n == 0 {
        match edit {
            Edit::Replace(_, x) => *v = x.clone(),
            Edit::Leaf(_, s, u, i) => match v {
                Value::String(old) => *old = s.clone(),
                Value::Bool(b) => *b = !*b,
                Value::Number(num) if num.is_u64() => *v = Value::from(*u),
                Value::Number(num) if num.is_i64() => *v = Value::from(*i),
                _ => {}
            },
            Edit::Add(_, k, x) => {
                if let Value::Object(m) = v {
                    m.insert(k.clone(), x.clone());
                }
            }
            Edit::Remove(_) => *v = Value::Null,
        }
        return true;
    }
    *n -= 1;
    match v {
        Value::Object(m) => {
            let mut hit = None;
            for (k, x) in m.iter_mut() {
                let size = count(x);
                if *n >= size {
                    *n -= size;
                    continue;
                }
                if matches!(edit, Edit::Remove(_)) && *n == 0 {
                    hit = Some(k.clone());
                    break;
                }
                return edit_at(x, n, edit);
            }
            hit.is_some_and(|k| m.shift_remove(&k).is_some())
        }
        Value::Array(a) => {
            for i in 0..a.len() {
                if *n < count(&a[i]) {
                    if matches!(edit, Edit::Remove(_)) && *n == 0 {
                        a.remove(i);
                        return true;
                    }
                    return edit_at(&mut a[i], n, edit);
                }
                *n -= count(&a[i]);
            }
            false
        }
        _ => false,
    }
}

/// `v` after `edits`.
pub fn apply_edits(mut v: Value, edits: &[Edit]) -> Value {
    for e in edits {
        let i = match e {
            Edit::Replace(i, _) | Edit::Leaf(i, ..) | Edit::Remove(i) | Edit::Add(i, ..) => i,
        };
        let mut n = i.index(count(&v));
        edit_at(&mut v, &mut n, e);
    }
    v
}

/// `inner` wrapped in `depth` arrays or objects.
pub fn nest(inner: &str, depth: usize, objects: bool) -> String {
    let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Whether `text` holds a number that is not an integer (or is not JSON as `Value` reads it).
/// Such a number in a free-form value (a scope, a tool's input) may come back one unit in the
/// last place off: serde_json's default float parsing is fast, not exact. Frames holding one
/// must still re-encode to something that decodes, not necessarily to the same value.
pub fn has_float(text: &str) -> bool {
    fn walk(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_f64(),
            Value::Array(a) => a.iter().any(walk),
            Value::Object(m) => m.values().any(walk),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(text).map_or(true, |v| walk(&v))
}

/// Parsed JSON seeds and every object key they use: the material of structural edits.
pub type Docs = (Arc<Vec<Value>>, Arc<Vec<String>>);
