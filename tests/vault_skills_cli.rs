//! The vault and shared skills as people use them (DESIGN §8, §9): each step a real `claudemesh`
//! process against real agent processes and a real broker (in this process, with its redb
//! file). A member's secrets never show up in any output, log or broker file, and no other
//! member can list or delete them; skills are shared from a file or a directory, found, fetched
//! and written out, and removed by their author or an admin only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use claudemesh_agent::Paths;
use common::*;
use serde_json::Value;

fn ok(paths: &Paths, args: &[&str]) -> String {
    let (code, out, err) = cli(paths, args);
    assert_eq!(code, 0, "{args:?}: {out} {err}");
    out
}

fn json(paths: &Paths, args: &[&str]) -> Value {
    let out = ok(paths, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Runs `args` expecting a failure; returns stderr.
fn fails(paths: &Paths, args: &[&str]) -> String {
    let (code, out, err) = cli(paths, args);
    assert_ne!(code, 0, "{args:?} should fail: {out} {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

/// Every file below `dir`, read as bytes.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p.display().to_string(), b));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn keys(list: &Value) -> Vec<String> {
    list["entries"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_values_stay_secret_and_per_member() {
    let w = World::start().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let carol = AgentProcess::start(&w.member("carol").await).await;
    wait_connected(&mut carol.client().await).await;
    let files = tempfile::tempdir().unwrap();

    // Three ways in: an argument, a file mounted for a service, stdin. And a binary file.
    let (arg_secret, file_secret, stdin_secret) =
        ("ghp-ArgSecret-4711", "{\"sa\":\"FileSecret-0815\"}", "PipedSecret-1234");
    let mut outputs =
        vec![ok(&bob.paths, &["vault", "set", "GH_TOKEN", arg_secret, "--description", "github, read-only"])];
    assert_eq!(outputs[0].trim(), "set GH_TOKEN in team (env)");
    let sa = files.path().join("sa.json");
    std::fs::write(&sa, file_secret).unwrap();
    let out =
        ok(&bob.paths, &["vault", "set", "gcp", "--file", sa.to_str().unwrap(), "--mount", "gcp/sa.json"]);
    assert_eq!(out.trim(), "set gcp in team (file, mounted at secrets/gcp/sa.json)");
    outputs.push(out);
    let (code, out, err) = cli_stdin(
        &bob.paths,
        &["vault", "set", "PIPED", "-", "--json"],
        format!("{stdin_secret}\n").as_bytes(),
    );
    assert_eq!(code, 0, "{out} {err}");
    let set: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (set["mesh"].as_str(), set["key"].as_str(), set["kind"].as_str()),
        (Some("team"), Some("PIPED"), Some("env"))
    );
    outputs.extend([out, err]);
    let der = files.path().join("key.der");
    let der_secret = b"\xff\xfeBinSecret-9876\x00\x01";
    std::fs::write(&der, der_secret).unwrap();
    outputs.push(ok(&bob.paths, &["vault", "set", "DER", "--file", der.to_str().unwrap(), "--kind", "file"]));

    // Metadata only.
    let list = json(&bob.paths, &["vault", "list", "--json"]);
    assert_eq!(keys(&list), ["DER", "GH_TOKEN", "PIPED", "gcp"], "{list}");
    let by_key =
        |k: &str| list["entries"].as_array().unwrap().iter().find(|e| e["key"] == k).unwrap().clone();
    assert_eq!(by_key("gcp")["kind"], "file");
    assert_eq!(by_key("gcp")["mount_path"], "gcp/sa.json");
    assert_eq!(by_key("GH_TOKEN")["description"], "github, read-only");
    assert_eq!(by_key("DER")["kind"], "file");
    let table = ok(&bob.paths, &["vault", "list"]);
    assert!(
        table.starts_with("KEY") && table.contains(" gcp/sa.json ") && table.contains("github, read-only"),
        "{table}"
    );
    outputs.extend([list.to_string(), table]);

    // Another member sees none of it and cannot delete it: for it the key does not exist.
    assert_eq!(keys(&json(&carol.paths, &["vault", "list", "--json"])), Vec::<String>::new());
    assert!(ok(&carol.paths, &["vault", "list"]).contains("no vault entries"));
    let err = fails(&carol.paths, &["vault", "delete", "GH_TOKEN"]);
    assert!(err.contains("`claudemesh vault list` shows the keys you have set"), "not_found: {err}");
    assert_eq!(keys(&json(&bob.paths, &["vault", "list", "--json"])).len(), 4, "still there");

    // Deleted by its owner: gone; a second delete is not_found.
    assert_eq!(ok(&bob.paths, &["vault", "delete", "GH_TOKEN"]).trim(), "deleted GH_TOKEN from team");
    assert_eq!(keys(&json(&bob.paths, &["vault", "list", "--json"])), ["DER", "PIPED", "gcp"]);
    let err = fails(&bob.paths, &["vault", "delete", "GH_TOKEN"]);
    assert!(err.contains("vault list"), "{err}");

    // Clear errors, nothing stored.
    let err = fails(&bob.paths, &["vault", "set", "bad key", "x"]);
    assert!(err.contains("invalid vault key") && err.contains("GH_TOKEN"), "{err}");
    let big = files.path().join("big");
    std::fs::write(&big, vec![b'x'; 64 * 1024 + 1]).unwrap();
    let err = fails(&bob.paths, &["vault", "set", "BIG", "--file", big.to_str().unwrap()]);
    assert!(err.contains("larger than 64 KiB") && err.contains("nothing was stored"), "{err}");
    let (code, _, err) = cli_stdin(&bob.paths, &["vault", "set", "BIG", "-"], &vec![b'y'; 70_000]);
    assert!(code != 0 && err.contains("stdin is larger than 64 KiB"), "{err}");
    let err = fails(&bob.paths, &["vault", "set", "MISSING", "--file", "/no/such/file"]);
    assert!(err.contains("cannot read --file /no/such/file"), "{err}");
    let err = fails(&bob.paths, &["vault", "set", "M", "v", "--mount", "../etc/passwd"]);
    assert!(err.contains("--mount"), "{err}");
    // A mistyped flag is not stored as the value; an unquoted value is not echoed.
    let err = fails(&bob.paths, &["vault", "set", "TYPO", "--descripton=x"]);
    assert!(err.contains("--descripton"), "{err}");
    let err = fails(&bob.paths, &["vault", "set", "WORDS", "my", "pass", "phrase"]);
    assert!(err.contains("3 separate words") && !err.contains("phrase"), "{err}");
    // A value with a NUL byte cannot be an environment variable: refused, naming the file form.
    let err = fails(&bob.paths, &["vault", "set", "NUL", "--file", der.to_str().unwrap()]);
    assert!(err.contains("NUL byte") && err.contains("--kind file"), "{err}");
    let err = fails(&bob.paths, &["vault", "delete", ""]);
    assert!(err.contains("invalid vault key"), "{err}");
    assert_eq!(keys(&json(&bob.paths, &["vault", "list", "--json"])).len(), 3);

    // No value anywhere: not in any output, not in the agents' logs, not in the broker's files.
    let secrets: [&[u8]; 4] =
        [arg_secret.as_bytes(), b"FileSecret-0815", stdin_secret.as_bytes(), der_secret];
    for o in &outputs {
        for s in &secrets[..3] {
            assert!(!contains(o.as_bytes(), s), "a value was printed: {o}");
        }
    }
    for (path, bytes) in all_bytes(w.dir.path()) {
        for s in &secrets {
            assert!(!contains(&bytes, s), "a value is in {path}");
        }
    }
}

/// A skill directory: SKILL.md with front matter, a reference file, and a hidden file.
fn skill_dir(root: &Path) -> std::path::PathBuf {
    let d = root.join("deploy-guide");
    std::fs::create_dir_all(d.join("refs")).unwrap();
    std::fs::write(
        d.join("SKILL.md"),
        "---\nname: deploy-guide\ndescription: How we deploy\n---\nRead refs/checklist.md first.\n",
    )
    .unwrap();
    std::fs::write(d.join("refs/checklist.md"), "- tests pass\n- tag pushed\n").unwrap();
    std::fs::write(d.join(".env"), "NOT=shared").unwrap();
    d
}

fn names(list: &Value) -> Vec<String> {
    list["skills"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skills_are_shared_found_fetched_and_removed() {
    let w = World::start().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let carol = AgentProcess::start(&w.member("carol").await).await;
    wait_connected(&mut carol.client().await).await;
    let admin = AgentProcess::start(&w.admin_paths()).await;
    wait_connected(&mut admin.client().await).await;
    let files = tempfile::tempdir().unwrap();

    // From a file, its description given (with an escape sequence a terminal must not get).
    let md = files.path().join("SKILL.md");
    let instructions = "# Review\n\nCheck the tests, then the error paths.\n";
    std::fs::write(&md, instructions).unwrap();
    let out = ok(
        &bob.paths,
        &[
            "skill",
            "share",
            "review",
            "--file",
            md.to_str().unwrap(),
            "--description",
            "Code review\u{1b}[2J checklist",
            "--tag",
            "rust",
            "--tag",
            "qa",
        ],
    );
    assert!(out.starts_with("shared skill review in team;"), "{out}");
    // From a directory: the front matter's description, the visible files.
    let dir = skill_dir(files.path());
    let out = ok(&bob.paths, &["skill", "share", "deploy-guide", "--file", dir.to_str().unwrap()]);
    assert!(out.starts_with("shared skill deploy-guide with 1 file in team"), "{out}");

    // Found by anyone, by words of its name, description or tags.
    let list = json(&carol.paths, &["skill", "list", "--json"]);
    assert_eq!(names(&list), ["deploy-guide", "review"], "{list}");
    let guide = &list["skills"][0];
    assert_eq!(guide["description"], "How we deploy");
    assert_eq!(guide["author_name"], "bob");
    assert_eq!(names(&json(&carol.paths, &["skill", "list", "RUST", "--json"])), ["review"]);
    assert_eq!(names(&json(&carol.paths, &["skill", "list", "deploy", "how", "--json"])), ["deploy-guide"]);
    assert!(ok(&carol.paths, &["skill", "list", "python"]).contains("no skill matches"));
    let table = ok(&carol.paths, &["skill", "list"]);
    assert!(table.starts_with("NAME") && table.contains("rust,qa") && table.contains("bob ("), "{table}");
    assert!(table.contains("Code review checklist"), "{table}");
    assert!(!table.contains('\u{1b}'), "an escape sequence reached the terminal: {table:?}");

    // Fetched: stdout is the instructions alone, who shared it is on stderr.
    let (code, out, err) = cli(&carol.paths, &["skill", "get", "review"]);
    assert_eq!((code, out.as_str()), (0, instructions), "{err}");
    assert!(err.contains("shared by bob (") && err.contains("in team"), "{err}");
    let got = json(&carol.paths, &["skill", "get", "deploy-guide", "--json"]);
    assert_eq!(got["files"]["refs/checklist.md"], "- tests pass\n- tag pushed\n", "{got}");
    assert!(got["files"].get(".env").is_none(), "hidden files stay home: {got}");
    // Written out: the exact files; not over existing ones unless --force.
    let out_dir = files.path().join("fetched");
    let o = out_dir.to_str().unwrap();
    let out = ok(&carol.paths, &["skill", "get", "deploy-guide", "--out", o]);
    assert!(out.contains("SKILL.md, refs/checklist.md"), "{out}");
    assert_eq!(
        std::fs::read(out_dir.join("SKILL.md")).unwrap(),
        std::fs::read(dir.join("SKILL.md")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("refs/checklist.md")).unwrap(),
        "- tests pass\n- tag pushed\n"
    );
    std::fs::write(out_dir.join("SKILL.md"), "mine").unwrap();
    let err = fails(&carol.paths, &["skill", "get", "deploy-guide", "--out", o]);
    assert!(err.contains("--force") && err.contains("nothing was written"), "{err}");
    assert_eq!(std::fs::read_to_string(out_dir.join("SKILL.md")).unwrap(), "mine");
    ok(&carol.paths, &["skill", "get", "deploy-guide", "--out", o, "--force"]);
    assert_ne!(std::fs::read_to_string(out_dir.join("SKILL.md")).unwrap(), "mine");
    let err = fails(&carol.paths, &["skill", "get", "nope"]);
    assert!(err.contains("skill list"), "{err}");

    // Removed: not by another member; by its author; by an admin.
    let err = fails(&carol.paths, &["skill", "remove", "review"]);
    assert!(err.contains("only its author or a mesh admin"), "{err}");
    assert_eq!(ok(&bob.paths, &["skill", "remove", "review"]).trim(), "removed skill review from team");
    assert_eq!(
        ok(&admin.paths, &["skill", "remove", "deploy-guide"]).trim(),
        "removed skill deploy-guide from team"
    );
    assert!(names(&json(&carol.paths, &["skill", "list", "--json"])).is_empty());

    // What cannot be shared is refused before anything is sent.
    std::fs::write(dir.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 0]).unwrap();
    let err = fails(&bob.paths, &["skill", "share", "guide2", "--file", dir.to_str().unwrap()]);
    assert!(err.contains("logo.png is not a text file"), "{err}");
    let err = fails(&bob.paths, &["skill", "share", "Bad Name", "--file", md.to_str().unwrap()]);
    assert!(err.contains("invalid skill name"), "{err}");
    let empty = files.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = fails(&bob.paths, &["skill", "share", "empty", "--file", empty.to_str().unwrap()]);
    assert!(err.contains("no SKILL.md"), "{err}");
    assert!(names(&json(&bob.paths, &["skill", "list", "--json"])).is_empty());
}
