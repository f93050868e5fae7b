//! Service preparation (runner::prepare): bundles checked and extracted, a local git repository
//! prepared, updated and reused, the step runner's timeout and cancellation, and, when
//! `CLAUDEMESH_SERVICES_NETWORK` is set, real npm and PyPI packages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use claudemesh_broker::runner::log::LogSink;
use claudemesh_broker::runner::prepare::step::{PASSTHROUGH, Step, StepCtx, which_in};
use claudemesh_broker::runner::prepare::{
    BundleError, GitPolicy, PrepareOptions, ZipLimits, check_zip, prepare, prepare_with,
};
use claudemesh_broker::runner::wire::{
    ChildLimits, HealthPolicy, PrepareMode, PrepareSource, RestartPolicy, ServiceSpec,
};
use tokio_util::sync::CancellationToken;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

fn spec(dir: &Path, source: PrepareSource, prepare: PrepareMode, timeout_ms: u64) -> ServiceSpec {
    ServiceSpec {
        name: "svc".into(),
        dir: dir.to_owned(),
        source,
        args: vec!["--flag".into()],
        entry: None,
        env: BTreeMap::from([("SECRET".into(), "hunter2".into())]),
        secrets: Vec::new(),
        prepare,
        limits: ChildLimits {
            memory_bytes: 512 << 20,
            open_files: 256,
            processes: 256,
            prepare_timeout_ms: timeout_ms,
        },
        health: HealthPolicy { interval_ms: 30_000, timeout_ms: 5_000, misses: 3, start_timeout_ms: 30_000 },
        restart: RestartPolicy {
            backoff_min_ms: 1_000,
            backoff_max_ms: 60_000,
            max_crashes: 5,
            crash_window_ms: 600_000,
        },
    }
}

fn sink() -> (LogSink, tokio::sync::mpsc::Receiver<(String, String)>) {
    LogSink::channel("svc", 100_000)
}

fn drain(rx: &mut tokio::sync::mpsc::Receiver<(String, String)>) -> Vec<String> {
    std::iter::from_fn(|| rx.try_recv().ok()).map(|(_, l)| l).collect()
}

enum E<'a> {
    File(&'a str, &'a [u8]),
    Exec(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn write_zip(path: &Path, entries: &[E<'_>]) {
    let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().unix_permissions(0o644);
    for e in entries {
        match e {
            E::File(name, data) => {
                zip.start_file(*name, opts).unwrap();
                zip.write_all(data).unwrap();
            }
            E::Exec(name, data) => {
                zip.start_file(*name, opts.unix_permissions(0o755)).unwrap();
                zip.write_all(data).unwrap();
            }
            E::Symlink(name, target) => zip.add_symlink(*name, *target, opts).unwrap(),
        }
    }
    zip.finish().unwrap();
}

#[test]
fn check_zip_refuses_every_way_out_and_every_excess() {
    let dir = tempfile::tempdir().unwrap();
    let zip = |name: &str, entries: &[E<'_>]| {
        let p = dir.path().join(name);
        write_zip(&p, entries);
        p
    };
    let limits = ZipLimits::default();
    let evil = zip("evil.zip", &[E::File("ok.txt", b"x"), E::File("../evil", b"x")]);
    assert!(matches!(check_zip(&evil, &limits), Err(BundleError::ParentDir { entry }) if entry == "../evil"));
    let deep = zip("deep.zip", &[E::File("a/b/../../../evil", b"x")]);
    assert!(matches!(check_zip(&deep, &limits), Err(BundleError::ParentDir { .. })));
    let abs = zip("abs.zip", &[E::File("/abs", b"x")]);
    assert!(matches!(check_zip(&abs, &limits), Err(BundleError::AbsolutePath { entry }) if entry == "/abs"));
    let back = zip("back.zip", &[E::File("a\\..\\evil", b"x")]);
    assert!(matches!(check_zip(&back, &limits), Err(BundleError::Backslash { .. })));
    let link = zip("link.zip", &[E::Symlink("innocent", "/etc/passwd")]);
    assert!(matches!(check_zip(&link, &limits), Err(BundleError::Symlink { entry }) if entry == "innocent"));

    let names: Vec<String> = (0..=limits.max_entries).map(|i| format!("f{i}")).collect();
    let many: Vec<E<'_>> = names.iter().map(|n| E::File(n, b"")).collect();
    let many = zip("many.zip", &many);
    assert!(matches!(
        check_zip(&many, &limits),
        Err(BundleError::TooManyEntries { count: 10_001, max: 10_000 })
    ));

    let big = vec![0u8; 64 * 1024];
    let bomb = zip("bomb.zip", &[E::File("zeros", &big)]);
    let small = ZipLimits { max_uncompressed_bytes: 1024, ..limits };
    assert!(matches!(check_zip(&bomb, &small), Err(BundleError::TooLargeUncompressed { max: 1024 })));
    let tiny = ZipLimits { max_archive_bytes: 100, ..limits };
    assert!(matches!(check_zip(&bomb, &tiny), Err(BundleError::ArchiveTooLarge { max: 100, .. })));

    let good = zip("good.zip", &[E::File("pkg/a.txt", b"hello"), E::File("b.txt", b"")]);
    let summary = check_zip(&good, &limits).unwrap();
    assert_eq!((summary.files, summary.uncompressed_bytes), (2, 5));
    let not_zip = dir.path().join("not.zip");
    std::fs::write(&not_zip, b"plain text").unwrap();
    assert!(matches!(check_zip(&not_zip, &limits), Err(BundleError::Zip(_))));
}

#[tokio::test]
async fn a_node_bundle_is_extracted_detected_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = br#"{"name": "hello-mcp", "version": "1.0.0", "main": "index.js"}"#;
    write_zip(
        &dir.path().join("bundle.zip"),
        &[E::File("package.json", pkg), E::File("index.js", b"// hi\n")],
    );
    let source = PrepareSource::Bundle { zip: "bundle.zip".into() };
    let (log, mut rx) = sink();
    let cancel = CancellationToken::new();
    let s = spec(dir.path(), source.clone(), PrepareMode::Fresh, 30_000);
    let p = prepare(&s, &log, &cancel).await.unwrap();
    let src = dir.path().join("src").canonicalize().unwrap();
    assert_eq!(p.argv.len(), 3, "{:?}", p.argv);
    assert!(p.argv[0].ends_with("/node") && Path::new(&p.argv[0]).is_file(), "{:?}", p.argv);
    assert_eq!(PathBuf::from(&p.argv[1]), src.join("index.js"));
    assert!(Path::new(&p.argv[1]).is_file());
    assert_eq!(p.argv[2], "--flag");
    assert_eq!(p.resolved.command, p.argv);
    assert!(dir.path().join("prepared.json").is_file());
    let lines = drain(&mut rx);
    assert!(lines.iter().any(|l| l.contains("unzip")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("hunter2")));

    // Reuse starts from the record: nothing is extracted again.
    std::fs::write(src.join("marker"), b"").unwrap();
    let reuse = spec(dir.path(), source, PrepareMode::Reuse, 30_000);
    assert_eq!(prepare(&reuse, &log, &cancel).await.unwrap(), p);
    assert!(src.join("marker").exists());
    // Fresh extracts into a new directory.
    prepare(&s, &log, &cancel).await.unwrap();
    assert!(!src.join("marker").exists());
    // A failed preparation leaves no record for a later reuse.
    std::fs::write(dir.path().join("bundle.zip"), b"broken").unwrap();
    assert_eq!(prepare(&s, &log, &cancel).await.unwrap_err().step, "unzip");
    assert!(!dir.path().join("prepared.json").exists());
}

#[tokio::test]
async fn a_bundle_without_a_known_runtime_asks_for_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    write_zip(&dir.path().join("b.zip"), &[E::Exec("bin/server", b"#!/bin/sh\n")]);
    let mut s = spec(dir.path(), PrepareSource::Bundle { zip: "b.zip".into() }, PrepareMode::Fresh, 30_000);
    let (log, _rx) = sink();
    let err = prepare(&s, &log, &CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.step, "detect runtime");
    assert!(err.message.contains("package.json") && err.message.contains("--entry"), "{err}");
    assert!(err.message.contains("svc"));

    s.entry = Some(vec!["bin/server".into(), "--stdio".into()]);
    let p = prepare(&s, &log, &CancellationToken::new()).await.unwrap();
    let server = dir.path().join("src/bin/server").canonicalize().unwrap();
    assert_eq!(p.argv, vec![server.to_str().unwrap(), "--stdio", "--flag"]);
    s.entry = Some(vec!["../../etc/passwd".into()]);
    assert_eq!(prepare(&s, &log, &CancellationToken::new()).await.unwrap_err().step, "entry");
}

#[tokio::test]
async fn a_cargo_bundle_is_built_and_its_binary_is_the_entry() {
    if which_in("cargo", &std::env::var_os("PATH").unwrap_or_default()).is_none() {
        eprintln!("skipped: cargo is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = b"[package]\nname = \"hello-mcp\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";
    let main = b"fn main() { println!(\"hi\"); }\n";
    write_zip(&dir.path().join("b.zip"), &[E::File("Cargo.toml", manifest), E::File("src/main.rs", main)]);
    let s = spec(dir.path(), PrepareSource::Bundle { zip: "b.zip".into() }, PrepareMode::Fresh, 300_000);
    let (log, _rx) = sink();
    let p = prepare(&s, &log, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log_tail.join("\n")));
    assert!(p.argv[0].ends_with("/src/target/release/hello-mcp"), "{:?}", p.argv);
    let out = Command::new(&p.argv[0]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn commit(repo: &Path, n: u32) -> String {
    std::fs::write(repo.join("version.txt"), n.to_string()).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", &format!("commit {n}")]);
    git(repo, &["rev-parse", "HEAD"])
}

#[tokio::test]
async fn a_local_git_repository_is_cloned_updated_and_reused() {
    let repo = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    std::fs::write(repo.path().join("server.sh"), "#!/bin/sh\n").unwrap();
    let first = commit(repo.path(), 1);
    let url = format!("file://{}", repo.path().display());
    let mut s =
        spec(dir.path(), PrepareSource::Git { url, rev: Some("main".into()) }, PrepareMode::Fresh, 60_000);
    s.entry = Some(vec!["server.sh".into()]);
    let (log, mut rx) = sink();
    let cancel = CancellationToken::new();

    let refused = prepare(&s, &log, &cancel).await.unwrap_err();
    assert_eq!(refused.step, "git clone");
    assert!(refused.message.contains("local"), "{refused}");

    let local = PrepareOptions { git: GitPolicy { allow_local: true }, ..PrepareOptions::default() };
    let p = prepare_with(&s, &log, &cancel, &local).await.unwrap();
    assert_eq!(p.resolved.sha.as_deref(), Some(first.as_str()));
    let script = dir.path().join("src/server.sh").canonicalize().unwrap();
    assert_eq!(p.argv, vec![script.to_str().unwrap(), "--flag"]);
    assert!(drain(&mut rx).iter().any(|l| l.contains("git clone")));

    let second = commit(repo.path(), 2);
    let p = prepare_with(&s, &log, &cancel, &local).await.unwrap();
    assert_eq!(p.resolved.sha.as_deref(), Some(second.as_str()));
    assert_eq!(std::fs::read_to_string(dir.path().join("src/version.txt")).unwrap(), "2");

    commit(repo.path(), 3);
    s.prepare = PrepareMode::Reuse;
    let p = prepare_with(&s, &log, &cancel, &local).await.unwrap();
    assert_eq!(p.resolved.sha.as_deref(), Some(second.as_str()));

    // A tag or commit checks out as it is.
    s.prepare = PrepareMode::Fresh;
    s.source =
        PrepareSource::Git { url: format!("file://{}", repo.path().display()), rev: Some(first.clone()) };
    let p = prepare_with(&s, &log, &cancel, &local).await.unwrap();
    assert_eq!(p.resolved.sha.as_deref(), Some(first.as_str()));
}

fn step_ctx(dir: &Path, timeout: Duration, cancel: &CancellationToken) -> (StepCtx, LogSink) {
    let (log, _rx) = LogSink::channel("svc", 1000);
    (StepCtx::new("svc", dir, timeout, &log, cancel), log)
}

/// The state letter of `/proc/<pid>/stat`, `None` when the process is gone.
fn proc_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}

#[tokio::test]
async fn a_step_that_runs_too_long_is_killed_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let (ctx, _log) = step_ctx(dir.path(), Duration::from_millis(200), &cancel);
    let sh = which_in("sh", &ctx.path).unwrap();
    let pidfile = dir.path().join("pid");
    // The shell leaves `sleep 10` in the background: killing the group must take it too.
    let script = format!("echo started; sleep 10 & echo $! > {}; wait", pidfile.display());
    let step = Step::new("sleep 10", sh, dir.path()).args(["-c", &script]);
    let err = ctx.run(&step).await.unwrap_err();
    assert_eq!(err.step, "sleep 10");
    assert!(err.message.contains("timed out after 200 ms") && err.message.contains("svc"), "{err}");
    assert_eq!(err.log_tail, vec!["started"]);
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = proc_state(pid.trim());
    assert!(matches!(state, None | Some('Z') | Some('X')), "sleep still alive: {state:?}");

    let sleep = which_in("sleep", &ctx.path).unwrap();
    let (ctx, _log) = step_ctx(dir.path(), Duration::from_secs(60), &cancel);
    let step = Step::new("sleep 10", sleep, dir.path()).args(["10"]);
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    let err = ctx.run(&step).await.unwrap_err();
    assert!(err.message.contains("cancelled"), "{err}");
}

#[tokio::test]
async fn failing_steps_report_their_exit_code_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let (ctx, _log) = step_ctx(dir.path(), Duration::from_secs(30), &cancel);
    let sh = which_in("sh", &ctx.path).unwrap();
    let script = "i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); done; echo oops >&2; exit 3";
    let err = ctx.run(&Step::new("make", sh, dir.path()).args(["-c", script])).await.unwrap_err();
    assert_eq!(err.to_string(), "make failed: exited with code 3 (service `svc`)");
    assert_eq!(err.log_tail.len(), 40);
    assert_eq!(err.log_tail.last().map(String::as_str), Some("oops"));
    // The environment is cleared: PATH, HOME (the service dir), LANG, the step's own, and the
    // runner's registry settings (proxies, CA bundles) when it has them.
    let (ctx, _log) = step_ctx(dir.path(), Duration::from_secs(30), &cancel);
    let env = which_in("env", &ctx.path).unwrap();
    let out = ctx.run(&Step::new("env", env, dir.path()).env("EXTRA", "1")).await.unwrap();
    let keys: Vec<&str> = out.stdout.iter().filter_map(|l| l.split('=').next()).collect();
    for k in ["EXTRA", "HOME", "LANG", "PATH"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    for k in &keys {
        assert!(["EXTRA", "HOME", "LANG", "PATH"].contains(k) || PASSTHROUGH.contains(k), "{k} leaked");
    }
    assert!(out.stdout.contains(&format!("HOME={}", dir.path().display())));
}

#[tokio::test]
async fn command_sources_resolve_argv_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _rx) = sink();
    let cancel = CancellationToken::new();
    let s = spec(
        dir.path(),
        PrepareSource::Command { argv: vec!["sh".into(), "-x".into()] },
        PrepareMode::Fresh,
        1000,
    );
    let p = prepare(&s, &log, &cancel).await.unwrap();
    assert!(Path::new(&p.argv[0]).is_absolute() && p.argv[0].ends_with("/sh"));
    assert_eq!(&p.argv[1..], ["-x", "--flag"]);
    let s = spec(
        dir.path(),
        PrepareSource::Command { argv: vec!["no-such-tool-x".into()] },
        PrepareMode::Fresh,
        1000,
    );
    assert!(prepare(&s, &log, &cancel).await.unwrap_err().message.contains("not found on PATH"));
    let s = spec(dir.path(), PrepareSource::Command { argv: vec!["./rel".into()] }, PrepareMode::Fresh, 1000);
    assert!(prepare(&s, &log, &cancel).await.is_err());
}

#[tokio::test]
async fn a_missing_tool_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (log, _rx) = sink();
    let cancel = CancellationToken::new();
    let no_tools =
        PrepareOptions { path: Some(empty.path().as_os_str().to_owned()), ..PrepareOptions::default() };
    let uvx = PrepareSource::Uvx { package: "mcp-server-time".into(), version: None };
    let err = prepare_with(&spec(dir.path(), uvx, PrepareMode::Fresh, 1000), &log, &cancel, &no_tools)
        .await
        .unwrap_err();
    assert_eq!(err.step, "uv venv");
    assert!(err.message.contains("`uv` was not found on PATH: install uv"), "{err}");
    let npx = PrepareSource::Npx { package: "left-pad".into(), version: Some("1.3.0".into()) };
    let err = prepare_with(&spec(dir.path(), npx, PrepareMode::Fresh, 1000), &log, &cancel, &no_tools)
        .await
        .unwrap_err();
    assert_eq!(err.step, "npm install");
    assert!(err.message.contains("install Node.js"), "{err}");
    // Bad input is refused before any tool is looked for.
    let bad = PrepareSource::Npx { package: "left-pad".into(), version: Some("--prefix=/".into()) };
    let err = prepare(&spec(dir.path(), bad, PrepareMode::Fresh, 1000), &log, &cancel).await.unwrap_err();
    assert!(err.message.contains("bad version"), "{err}");
}

/// Whether a network test runs: `CLAUDEMESH_SERVICES_NETWORK` unset → skip; set and `tool`
/// missing → skip, or fail when it is `required` (CI).
fn network_test(name: &str, tool: &str) -> bool {
    let Some(mode) = std::env::var("CLAUDEMESH_SERVICES_NETWORK").ok().filter(|v| !v.is_empty()) else {
        eprintln!("skipped {name}: set CLAUDEMESH_SERVICES_NETWORK=1 (or =required) to run it");
        return false;
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if which_in(tool, &path).is_none() {
        assert_ne!(
            mode, "required",
            "{name}: `{tool}` is not on PATH and CLAUDEMESH_SERVICES_NETWORK=required"
        );
        eprintln!("skipped {name}: `{tool}` is not on PATH");
        return false;
    }
    true
}

#[tokio::test]
async fn npx_installs_the_real_server_everything() {
    if !network_test("npx_installs_the_real_server_everything", "npm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source =
        PrepareSource::Npx { package: "@modelcontextprotocol/server-everything".into(), version: None };
    let (log, _rx) = sink();
    let p = prepare(&spec(dir.path(), source, PrepareMode::Fresh, 600_000), &log, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log_tail.join("\n")));
    assert!(p.resolved.version.as_deref().is_some_and(|v| !v.is_empty()), "{:?}", p.resolved);
    assert!(Path::new(&p.argv[0]).is_file() && p.argv[0].ends_with("/node"), "{:?}", p.argv);
    assert!(Path::new(&p.argv[1]).is_file(), "{:?}", p.argv);
}

#[tokio::test]
async fn uvx_installs_the_real_mcp_server_time() {
    if !network_test("uvx_installs_the_real_mcp_server_time", "uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = PrepareSource::Uvx { package: "mcp-server-time".into(), version: None };
    let (log, _rx) = sink();
    let p = prepare(&spec(dir.path(), source, PrepareMode::Fresh, 600_000), &log, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log_tail.join("\n")));
    assert!(p.resolved.version.as_deref().is_some_and(|v| !v.is_empty()), "{:?}", p.resolved);
    assert!(Path::new(&p.argv[0]).is_file() && p.argv[0].ends_with("/mcp-server-time"), "{:?}", p.argv);
}

#[tokio::test]
async fn a_python_bundle_installs_its_console_script() {
    if !network_test("a_python_bundle_installs_its_console_script", "uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pyproject =
        b"[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
[project]\nname = \"hello-mcp\"\nversion = \"0.1.0\"\n\n[project.scripts]\nhello-mcp = \"hello_mcp:main\"\n\n\
[tool.setuptools]\npy-modules = [\"hello_mcp\"]\n";
    let module = b"def main():\n    print('hi')\n";
    write_zip(
        &dir.path().join("b.zip"),
        &[E::File("pyproject.toml", pyproject), E::File("hello_mcp.py", module)],
    );
    let s = spec(dir.path(), PrepareSource::Bundle { zip: "b.zip".into() }, PrepareMode::Fresh, 600_000);
    let (log, _rx) = sink();
    let p = prepare(&s, &log, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", e.log_tail.join("\n")));
    assert!(p.argv[0].ends_with("/venv/bin/hello-mcp") && Path::new(&p.argv[0]).is_file(), "{:?}", p.argv);
    let out = Command::new(&p.argv[0]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
}
