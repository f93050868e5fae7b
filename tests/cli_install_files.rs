//! How `claudemesh install` / `uninstall` treat Claude Code's files on disk: the first backup is
//! kept, no lock or temp file is left, a symlink (dotfiles) stays a symlink with the edit in its
//! target, and updates another writer makes at the same time survive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_claudemesh");

const CLAUDE_JSON: &str =
    "{\n  \"numStartups\": 7,\n  \"mcpServers\": {\n    \"other\": {\"command\": \"x\"}\n  }\n}\n";
const SETTINGS: &str = "{\n  \"model\": \"opus\"\n}\n";

fn run(home: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(EXE).args(args).env("HOME", home).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

fn settings(home: &Path) -> PathBuf {
    home.join(".claude/settings.json")
}

#[test]
fn the_first_backup_is_kept_and_no_lock_file_is_left() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::write(h.join(".claude.json"), CLAUDE_JSON).unwrap();
    std::fs::create_dir(h.join(".claude")).unwrap();
    std::fs::write(settings(h), SETTINGS).unwrap();
    // What an older claudemesh left behind goes away with the next edit.
    std::fs::write(h.join(".claude.json.claudemesh-lock"), "").unwrap();
    std::fs::write(h.join(".claude/settings.json.claudemesh-lock"), "").unwrap();

    let v = run(h, &["install", "--json"]);
    let backup = h.join(".claude.json.claudemesh-backup");
    assert_eq!(v["mcp"]["backup"], backup.to_str().unwrap());
    for verb in ["uninstall", "install", "uninstall"] {
        let v = run(h, &[verb, "--json"]);
        assert_eq!(v["changed"], true, "{verb}");
        assert_eq!(v["mcp"]["backup"], backup.to_str().unwrap(), "{verb} names the backup it kept");
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap(),
            CLAUDE_JSON,
            "after {verb}: still the original"
        );
        let settings_backup = h.join(".claude/settings.json.claudemesh-backup");
        assert_eq!(std::fs::read_to_string(settings_backup).unwrap(), SETTINGS, "after {verb}");
    }
    assert_eq!(names(h), [".claude", ".claude.json", ".claude.json.claudemesh-backup"]);
    assert_eq!(names(&h.join(".claude")), ["settings.json", "settings.json.claudemesh-backup"]);
    assert_eq!(read(&h.join(".claude.json")), serde_json::from_str::<Value>(CLAUDE_JSON).unwrap());
}

#[test]
fn symlinked_files_stay_symlinks_and_their_targets_get_the_edit() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = h.join("dotfiles");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("claude.json"), CLAUDE_JSON).unwrap();
    std::fs::write(repo.join("settings.json"), SETTINGS).unwrap();
    std::fs::set_permissions(repo.join("settings.json"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("dotfiles/claude.json", h.join(".claude.json")).unwrap();
    std::fs::create_dir(h.join(".claude")).unwrap();
    std::os::unix::fs::symlink(repo.join("settings.json"), settings(h)).unwrap();
    let is_link = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type().is_symlink();

    for verb in ["install", "install", "uninstall"] {
        run(h, &[verb, "--json"]);
        assert!(is_link(&h.join(".claude.json")) && is_link(&settings(h)), "after {verb}");
        assert_eq!(names(&repo), ["claude.json", "settings.json"], "nothing else lands in the repo");
        let installed = verb == "install";
        assert_eq!(read(&repo.join("claude.json"))["mcpServers"]["claudemesh"].is_object(), installed);
        assert_eq!(read(&repo.join("settings.json"))["hooks"].is_object(), installed, "{verb}");
        let mode = std::fs::metadata(repo.join("settings.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the target keeps its mode");
    }
    assert_eq!(read(&repo.join("claude.json")), serde_json::from_str::<Value>(CLAUDE_JSON).unwrap());
    assert_eq!(std::fs::read_to_string(h.join(".claude.json.claudemesh-backup")).unwrap(), CLAUDE_JSON);
    // A link whose target does not exist yet: the target is created, the link kept.
    let empty = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("new.json", empty.path().join(".claude.json")).unwrap();
    run(empty.path(), &["install", "--json"]);
    assert!(is_link(&empty.path().join(".claude.json")));
    assert!(read(&empty.path().join("new.json"))["mcpServers"]["claudemesh"].is_object());
}

/// Another program writing the file all the time (more often than Claude Code, which writes
/// `~/.claude.json` on startup and as sessions go): it increments `key` by reading the file,
/// changing it and renaming a temp file over it, and skips a round if the file was replaced since
/// it read it. Its read and change happen without any lock, so claudemesh's edits run into them;
/// only its last check and rename take the lock claudemesh takes (on the file's directory), so
/// that a preempted thread cannot stretch the instant between them into a test failure. Returns
/// how many updates it made and how often it found its own last update gone.
fn hammer(path: PathBuf, key: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        use std::os::unix::fs::MetadataExt;
        let (mut written, mut lost) = (0u64, 0u64);
        let dir = path.parent().unwrap().to_path_buf();
        let tmp = path.with_file_name(format!(".{key}.writer-tmp"));
        while !stop.load(Ordering::Relaxed) {
            let before = std::fs::metadata(&path).unwrap().ino();
            let mut v = read(&path);
            let n = v[key].as_u64().unwrap_or(0);
            if n != written {
                lost += 1;
            }
            v[key] = json!(n + 1);
            std::fs::write(&tmp, serde_json::to_string_pretty(&v).unwrap()).unwrap();
            let lock = std::fs::File::open(&dir).unwrap();
            lock.lock().unwrap();
            if std::fs::metadata(&path).unwrap().ino() == before {
                std::fs::rename(&tmp, &path).unwrap();
                written = n + 1;
            }
            drop(lock);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&tmp);
        (written, lost)
    })
}

#[test]
fn updates_a_concurrent_writer_makes_survive_install_and_uninstall() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::write(h.join(".claude.json"), CLAUDE_JSON).unwrap();
    std::fs::create_dir(h.join(".claude")).unwrap();
    std::fs::write(settings(h), SETTINGS).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        hammer(h.join(".claude.json"), "writerCount", stop.clone()),
        hammer(settings(h), "writerCount", stop.clone()),
    ];
    for verb in ["install", "uninstall", "install", "uninstall", "install"] {
        run(h, &[verb, "--json"]);
        // The install's update is there, and so is everything the writer wrote.
        let cj = read(&h.join(".claude.json"));
        assert_eq!(cj["mcpServers"]["claudemesh"].is_object(), verb == "install", "after {verb}: {cj}");
        assert_eq!(cj["mcpServers"]["other"], json!({"command": "x"}));
        assert_eq!(read(&settings(h))["hooks"].is_object(), verb == "install", "after {verb}");
    }
    stop.store(true, Ordering::Relaxed);
    for (w, path) in writers.into_iter().zip([h.join(".claude.json"), settings(h)]) {
        let (written, lost) = w.join().unwrap();
        assert!(written > 0, "the writer ran");
        assert_eq!(
            lost,
            0,
            "claudemesh never replaced {} with a copy missing the writer's update",
            path.display()
        );
        assert_eq!(read(&path)["writerCount"], written, "{}", path.display());
    }
    assert_eq!(read(&settings(h))["model"], "opus");
}
