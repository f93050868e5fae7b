//! `claudemesh launch` in a real terminal: an interactive shell in a private tmux server runs
//! launch as a user would, against a real broker and agent process, with the stand-in `claude`
//! (tests/standin/claude.rs) on PATH. `claude` sees the terminal's size and is told of a resize
//! (SIGWINCH); Ctrl-Z stops launch and `claude` together and `fg` continues both, as it does
//! when `claude` stops itself (Claude Code's own Ctrl-Z); a `claude` that leaves the terminal raw
//! and crashes gets launch's exit code 139 and the terminal modes
//! back as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::launch::Home;
use common::{AgentProcess, EXE, World, wait_connected};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A tmux server of this test's own (its socket in the test's temp dir).
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().unwrap()
    }

    /// Starts an interactive dash in a 120×36 window with `env` (through `env`: tmux's own `-e`
    /// does not get PATH past the server's). Not bash: bash puts back terminal modes a program
    /// left changed, which would hide whether launch did.
    fn shell(dir: &Path, env: &[(&str, String)]) -> Self {
        let t = Tmux { socket: dir.join("tmux.sock") };
        let mut args: Vec<String> =
            ["new-session", "-d", "-s", "t", "-x", "120", "-y", "36", "env"].map(String::from).into();
        args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        args.extend(["dash", "-i"].map(String::from));
        let o = t.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "tmux: {}", String::from_utf8_lossy(&o.stderr));
        t
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Types `line` and a newline (C-j: a line end also for a terminal left raw, where Enter
    /// is a bare carriage return).
    fn run(&self, line: &str) {
        assert!(self.cmd(&["send-keys", "-t", "t", "-l", line]).status.success());
        assert!(self.cmd(&["send-keys", "-t", "t", "C-j"]).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// The state letter of `pid` (`R`, `S`, `T` for stopped, …) from `/proc/<pid>/stat`.
fn state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).unwrap_or("gone").to_string()
}

/// Waits until `ok()` holds (20 s at most), naming `what` and the screen otherwise.
async fn until(t: &Tmux, what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}; screen:\n{}", t.screen());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `path`'s content once it exists and is complete (ends with a newline).
async fn file(t: &Tmux, path: &Path) -> String {
    until(t, &format!("{} never written", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_owns_the_terminal_and_gets_it_back_sane() {
    let w = World::start().await;
    let bob = AgentProcess::start(&w.member("bob").await).await;
    wait_connected(&mut bob.client().await).await;
    let home = Home::new(&bob.paths);
    let d = home.dir.path().to_path_buf();
    let path = format!("{}:{}", home.bin.display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        ("HOME", home.home.display().to_string()),
        ("PATH", path),
        ("CLAUDEMESH_CONFIG_DIR", bob.paths.dir.display().to_string()),
        ("STANDIN_RECORD", home.record.display().to_string()),
        ("STANDIN_MODE", "wait".into()),
        ("PS1", "$ ".into()),
    ];
    let t = Tmux::shell(&d, &env);
    t.run(&format!("cd {} && stty -g > before.txt", d.display()));
    file(&t, &d.join("before.txt")).await;
    t.run(&format!("{EXE} launch --name tty"));

    // claude has the terminal: its size, then a resize.
    until(&t, "claude did not start", || !home.records().is_empty()).await;
    let start = home.wait_record("start", 1).await;
    assert_eq!(start["size"], "36 120", "{start}");
    let (launch, claude) = (start["ppid"].as_u64().unwrap() as u32, start["pid"].as_u64().unwrap() as u32);
    assert!(t.cmd(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]).status.success());
    let winch = home.wait_record("winch", 1).await;
    assert_eq!(winch["size"], "30 100", "{winch}");

    // Ctrl-Z stops both (the shell has the terminal back); `fg` continues both.
    assert!(t.cmd(&["send-keys", "-t", "t", "C-z"]).status.success());
    until(&t, "Ctrl-Z did not stop launch and claude", || state(launch) == "T" && state(claude) == "T").await;
    until(&t, "the shell did not report the job stopped", || t.screen().contains("Stopped")).await;
    t.run("fg");
    until(&t, "fg did not continue both", || state(launch) != "T" && state(claude) != "T").await;
    assert!(t.cmd(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]).status.success());
    assert_eq!(home.wait_record("winch", 2).await["size"], "25 90", "still claude's terminal after fg");

    // claude stops itself alone: launch stops too, so the shell has the job stopped again;
    // `fg` continues both.
    let stops = |t: &Tmux| t.screen().matches("Stopped").count();
    let before = stops(&t);
    kill(Pid::from_raw(claude as i32), Signal::SIGUSR2).unwrap();
    until(&t, "launch did not stop with claude", || state(launch) == "T" && state(claude) == "T").await;
    until(&t, "the shell did not report the job stopped again", || stops(&t) > before).await;
    t.run("fg");
    until(&t, "fg did not continue both again", || state(launch) != "T" && state(claude) != "T").await;
    home.wait_record("cont", 1).await;

    // claude leaves the terminal raw without echo and crashes: launch exits 139 and the
    // terminal modes are those from before.
    kill(Pid::from_raw(claude as i32), Signal::SIGUSR1).unwrap();
    assert_eq!(home.wait_record("raw", 1).await["ok"], true);
    until(&t, "launch did not end", || state(launch) == "gone").await;
    t.run("echo code=$? > code.txt; stty -g > after.txt");
    assert_eq!(file(&t, &d.join("code.txt")).await, "code=139");
    assert_eq!(
        file(&t, &d.join("after.txt")).await,
        std::fs::read_to_string(d.join("before.txt")).unwrap().trim(),
        "the terminal modes were restored"
    );
}
