//! Fuzzing the service bundle validator (`check_zip`, and `extract_zip` after it) inside
//! `cargo test`: arbitrary bytes, byte-level mutations of the seed corpus in
//! `tests/corpus/bundle/` and generated zips with hostile names, modes and compression never
//! panic and never write outside the target; a bundle `check_zip` passes extracts, with the
//! files it counted; zip bombs, traversal, duplicates and unsupported compression get their
//! typed errors. `CLAUDEMESH_FUZZ_CASES=N` runs longer; `CLAUDEMESH_FUZZ_WRITE_CORPUS=1`
//! rewrites the corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use claudemesh_broker::runner::prepare::bundle::extract_zip;
use claudemesh_broker::runner::prepare::{BundleError, ZipLimits, check_zip};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Cases per property unless `CLAUDEMESH_FUZZ_CASES` says otherwise (each writes a file).
const DEFAULT_CASES: u32 = 128;

fn config() -> Config {
    let cases =
        std::env::var("CLAUDEMESH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    Config { cases, max_shrink_iters: 1024, ..Config::default() }
}

/// Small limits, so that bombs are cheap to build.
const LIMITS: ZipLimits =
    ZipLimits { max_archive_bytes: 1 << 20, max_entries: 64, max_uncompressed_bytes: 1 << 20 };

/// One entry to write: name, data, unix mode (none: no mode), deflated or stored.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    data: Vec<u8>,
    mode: Option<u32>,
    deflate: bool,
}

fn file(name: &str, data: &[u8]) -> Entry {
    Entry { name: name.into(), data: data.to_vec(), mode: Some(0o644), deflate: true }
}

/// The zip of `entries`, or `None` when the writer itself refuses one.
fn build(entries: &[Entry]) -> Option<Vec<u8>> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for e in entries {
        let method = if e.deflate { CompressionMethod::Deflated } else { CompressionMethod::Stored };
        let mut opts = SimpleFileOptions::default().compression_method(method);
        if let Some(m) = e.mode {
            opts = opts.unix_permissions(m);
        }
        if e.name.ends_with('/') {
            zip.add_directory(e.name.as_str(), opts).ok()?;
        } else {
            zip.start_file(e.name.as_str(), opts).ok()?;
            zip.write_all(&e.data).ok()?;
        }
    }
    Some(zip.finish().ok()?.into_inner())
}

/// Offsets of every local (`PK\x03\x04`) and central (`PK\x01\x02`) header.
fn headers(zip: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let find = |sig: &[u8]| zip.windows(4).enumerate().filter(|(_, w)| *w == sig).map(|(i, _)| i).collect();
    (find(b"PK\x03\x04"), find(b"PK\x01\x02"))
}

/// Sets every entry's compression method field (local and central) to `method`.
fn patch_method(zip: &mut [u8], method: u16) {
    let (local, central) = headers(zip);
    local.iter().map(|o| o + 8).chain(central.iter().map(|o| o + 10)).for_each(|at| {
        zip[at..at + 2].copy_from_slice(&method.to_le_bytes());
    });
}

/// Sets every entry's declared uncompressed size (local and central) to `size`.
fn patch_size(zip: &mut [u8], size: u32) {
    let (local, central) = headers(zip);
    local.iter().map(|o| o + 22).chain(central.iter().map(|o| o + 24)).for_each(|at| {
        zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
    });
}

/// Sets every entry's unix mode (the high half of the central header's external attributes):
/// the writer keeps only permission bits.
fn patch_mode(zip: &mut [u8], mode: u16) {
    let (_, central) = headers(zip);
    for at in central.iter().map(|o| o + 40) {
        zip[at..at + 2].copy_from_slice(&mode.to_le_bytes());
    }
}

/// Replaces `from` by `to` (same length) in every entry name, local and central.
fn patch_name(zip: &mut [u8], from: &[u8], to: &[u8]) {
    let (local, central) = headers(zip);
    for (start, len_at) in
        local.iter().map(|o| (o + 30, o + 26)).chain(central.iter().map(|o| (o + 46, o + 28)))
    {
        let len = u16::from_le_bytes([zip[len_at], zip[len_at + 1]]) as usize;
        if &zip[start..start + len] == from {
            zip[start..start + len].copy_from_slice(to);
        }
    }
}

/// The corpus: valid bundles (`ok-`) and every way a bundle is refused (`err-`).
fn corpus_zips() -> Vec<(&'static str, Vec<u8>)> {
    let ok = |entries: &[Entry]| build(entries).unwrap();
    let exec = Entry { mode: Some(0o755), ..file("bin/run", b"#!/bin/sh\necho hi\n") };
    let stored = Entry { deflate: false, ..file("stored.txt", b"stored, not deflated") };
    let no_mode = Entry { mode: None, ..file("plain.txt", b"no unix mode") };
    let dir = Entry { mode: Some(0o755), ..file("lib/", b"") };
    let big = file("big.txt", &vec![b'x'; 200_000]);
    let mut bzip2 = ok(&[file("a.txt", b"hello")]);
    patch_method(&mut bzip2, 12);
    let mut lzma = ok(&[file("a.txt", b"hello")]);
    patch_method(&mut lzma, 14);
    let mut dup = ok(&[file("a.txt", b"one"), file("b.txt", b"two")]);
    patch_name(&mut dup, b"b.txt", b"a.txt");
    let mut lying = ok(&[file("bomb.txt", &vec![0; 100_000])]);
    patch_size(&mut lying, 10);
    let mut bomb = ok(&[file("bomb.txt", &vec![0; 100_000])]);
    patch_size(&mut bomb, u32::MAX - 1);
    let valid = ok(&[file("package.json", b"{}"), file("src/index.js", b"console.log(1)\n")]);
    let mut link = ok(&[file("innocent", b"/etc/passwd")]);
    patch_mode(&mut link, 0o120777);
    let mut fifo = ok(&[file("pipe", b"")]);
    patch_mode(&mut fifo, 0o010644);
    vec![
        ("ok-node.zip", valid.clone()),
        ("ok-nested.zip", ok(&[dir, file("lib/a/b/c.txt", b"deep"), exec, stored, no_mode])),
        ("ok-empty-file.zip", ok(&[file("empty", b"")])),
        ("ok-empty-zip.zip", ok(&[])),
        ("ok-unicode-name.zip", ok(&[file("caf\u{e9}/\u{1f600}.txt", b"x")])),
        ("ok-dot-segments.zip", ok(&[file("./a/./b.txt", b"x"), file("a//c.txt", b"y")])),
        ("ok-big-deflated.zip", ok(&[big])),
        ("err-parent.zip", ok(&[file("../evil", b"x")])),
        ("err-deep-parent.zip", ok(&[file("a/b/../../../evil", b"x")])),
        ("err-absolute.zip", ok(&[file("/abs", b"x")])),
        ("err-drive.zip", ok(&[file("C:evil", b"x")])),
        ("err-backslash.zip", ok(&[file("a\\..\\evil", b"x")])),
        ("err-symlink.zip", link),
        ("err-fifo.zip", fifo),
        ("err-dup-normalized.zip", ok(&[file("a/b.txt", b"1"), file("a/./b.txt", b"2")])),
        ("err-file-then-dir.zip", ok(&[file("a", b"1"), file("a/b", b"2")])),
        ("err-dir-then-file.zip", ok(&[file("a/b", b"1"), file("a", b"2")])),
        ("err-dup-names.zip", dup),
        ("err-bzip2.zip", bzip2),
        ("err-lzma.zip", lzma),
        ("err-lying-size.zip", lying),
        ("err-declared-bomb.zip", bomb),
        ("err-truncated.zip", valid[..valid.len() / 2].to_vec()),
        ("err-not-a-zip.zip", b"PK\x03\x04 this is not a zip at all".to_vec()),
        ("err-empty.zip", Vec::new()),
    ]
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/bundle")
}

static SEEDS: LazyLock<Vec<(String, Vec<u8>)>> = LazyLock::new(|| {
    if std::env::var_os("CLAUDEMESH_FUZZ_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(corpus_dir()).unwrap();
        for (name, bytes) in corpus_zips() {
            std::fs::write(corpus_dir().join(name), bytes).unwrap();
        }
    }
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "bundle corpus has {} seeds", seeds.len());
    seeds
});

/// Checks `bytes` as an uploaded bundle, then extracts it when the check passed: nothing is
/// written outside the target, and a bundle that passed extracts with the files it counted.
fn check(bytes: &[u8]) -> Result<(), BundleError> {
    let root = tempfile::tempdir().unwrap();
    let zip = root.path().join("bundle.zip");
    std::fs::write(&zip, bytes).unwrap();
    let summary = check_zip(&zip, &LIMITS)?;
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let extracted = extract_zip(&zip, &dest, &LIMITS);
    let mut names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["bundle.zip", "dest"], "something was written beside the target");
    match extracted {
        // Only the data can still be wrong: names, layout and methods were checked.
        Err(e @ (BundleError::SizeMismatch { .. } | BundleError::Corrupt { .. } | BundleError::Zip(_))) => {
            Err(e)
        }
        Err(e) => panic!("check_zip passed but extraction failed: {e:?}"),
        Ok(_) => {
            let files = count_files(&dest);
            assert_eq!(files, summary.files, "{summary:?}");
            Ok(())
        }
    }
}

/// Regular files under `dir`; there is never a symlink.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let t = e.file_type().unwrap();
            assert!(!t.is_symlink(), "{:?} is a symlink", e.path());
            if t.is_dir() { count_files(&e.path()) } else { 1 }
        })
        .sum()
}

#[test]
fn the_corpus_replays_with_the_expected_errors() {
    for (name, bytes) in SEEDS.iter() {
        let r = check(bytes);
        assert!(!name.starts_with("ok-") || r.is_ok(), "{name}: {r:?}");
        assert!(!name.starts_with("err-") || r.is_err(), "{name} passed");
        let want = |e: &BundleError| match name.as_str() {
            "err-parent.zip" | "err-deep-parent.zip" => matches!(e, BundleError::ParentDir { .. }),
            "err-absolute.zip" | "err-drive.zip" => matches!(e, BundleError::AbsolutePath { .. }),
            "err-backslash.zip" => matches!(e, BundleError::Backslash { .. }),
            "err-symlink.zip" => matches!(e, BundleError::Symlink { .. }),
            "err-fifo.zip" => matches!(e, BundleError::Special { .. }),
            "err-dup-normalized.zip" | "err-file-then-dir.zip" | "err-dir-then-file.zip" => {
                matches!(e, BundleError::Duplicate { .. })
            }
            "err-dup-names.zip" => matches!(e, BundleError::DuplicateNames),
            "err-bzip2.zip" | "err-lzma.zip" => matches!(e, BundleError::UnsupportedCompression { .. }),
            "err-declared-bomb.zip" => matches!(e, BundleError::TooLargeUncompressed { .. }),
            "err-truncated.zip" | "err-not-a-zip.zip" | "err-empty.zip" => matches!(e, BundleError::Zip(_)),
            _ => true,
        };
        if let Err(e) = &r {
            assert!(want(e), "{name}: {e:?}");
        }
    }
}

#[test]
fn a_bomb_that_lies_about_its_size_stops_at_the_declared_size() {
    let lying = &SEEDS.iter().find(|(n, _)| n == "err-lying-size.zip").unwrap().1;
    let root = tempfile::tempdir().unwrap();
    let zip = root.path().join("b.zip");
    std::fs::write(&zip, lying).unwrap();
    assert!(check_zip(&zip, &LIMITS).is_ok(), "the declared sizes are small");
    let e = extract_zip(&zip, root.path(), &LIMITS).unwrap_err();
    assert!(matches!(e, BundleError::SizeMismatch { .. } | BundleError::Corrupt { .. }), "{e:?}");
    assert!(std::fs::metadata(root.path().join("bomb.txt")).map_or(0, |m| m.len()) <= 10);
}

/// Names built from parts that matter to the path rules.
fn names() -> impl Strategy<Value = String> {
    let part = prop::sample::select(&["a", "b", "..", ".", "", "C:", "\\", "\u{0}", "caf\u{e9}", "a b"][..]);
    (any::<bool>(), vec(part, 1..4), any::<bool>()).prop_map(|(abs, parts, dir)| {
        format!("{}{}{}", if abs { "/" } else { "" }, parts.join("/"), if dir { "/" } else { "" })
    })
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    let mode = prop::sample::select(
        &[None, Some(0o644), Some(0o755), Some(0o120777), Some(0o040755), Some(0o020644)][..],
    );
    vec(
        (names(), vec(any::<u8>(), 0..64), mode, any::<bool>())
            .prop_map(|(name, data, mode, deflate)| Entry { name, data, mode, deflate }),
        0..6,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(prefix in any::<bool>(), bytes in vec(any::<u8>(), 0..1024)) {
        let bytes = if prefix { [b"PK\x03\x04".as_slice(), &bytes].concat() } else { bytes };
        let _ = check(&bytes);
    }

    #[test]
    fn mutated_bundles_never_panic_nor_escape(
        seed in any::<Index>(),
        edits in vec((any::<Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut bytes = SEEDS[seed.index(SEEDS.len())].1.clone();
        for (at, b, how) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = b,
                1 => bytes[i] ^= 1 << (b % 8),
                _ => bytes.truncate(i),
            }
        }
        let _ = check(&bytes);
    }

    #[test]
    fn generated_bundles_pass_only_when_they_extract(entries in entries()) {
        prop_assume!(!entries.is_empty());
        let Some(bytes) = build(&entries) else { return Ok(()) };
        if let Err(e) = check(&bytes) {
            prop_assert!(!matches!(e, BundleError::Io { .. }), "{:?}", e);
        }
    }
}
