//! The dashboard end to end: the real `claudemesh tui` in a real terminal (a private tmux
//! server), against a real broker on 127.0.0.1:0 and two real agent processes. Bob's session
//! appears live; a message typed and sent in alice's dashboard reaches bob; bob's reply shows
//! in the thread with the first message's delivery state; the agent killed shows as gone and
//! the view recovers when it is back; SIGTERM leaves the terminal restored. The Vault and
//! Skills views: a secret typed masked (never on screen) is stored, listed and deleted; a skill
//! directory is shared, read and removed, and a skill of another member cannot be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use claudemesh_protocol::frames::{Priority, Skill};
use claudemesh_protocol::local::{AgentCall, SkillListReply, SkillShareParams, VaultListReply};
use common::{AgentProcess, EXE, World, register, send_call, wait_connected, wait_inbox, wait_peer};

const BOB_SESSION: &str = "00000000-0000-4000-8000-00000000b0b0";

/// A tmux server of this test's own (its socket in the test's temp dir).
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().unwrap()
    }

    /// Starts `argv` in a 120×36 window, with `env`; the pane stays after it exits.
    fn start(dir: &Path, env: &[(&str, &str)], argv: &[&str]) -> Self {
        let t = Tmux { socket: dir.join("tmux.sock") };
        let mut args: Vec<String> = vec!["new-session".into(), "-d".into(), "-s".into(), "t".into()];
        args.extend(["-x", "120", "-y", "36"].map(String::from));
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(argv.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = t.cmd(&argv);
        assert!(o.status.success(), "tmux: {}", String::from_utf8_lossy(&o.stderr));
        t.cmd(&["set-option", "-t", "t", "remain-on-exit", "on"]);
        t
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        assert!(self.cmd(&args).status.success());
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        assert!(self.cmd(&["send-keys", "-t", "t", "-l", text]).status.success());
    }

    fn format(&self, f: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["display-message", "-p", "-t", "t", f]).stdout).trim().to_string()
    }

    /// Waits until the screen satisfies `ok`; panics with the screen after `secs`.
    async fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("{what}: not on screen after {secs} s:\n{s}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

/// Whether tmux is here; without it the test is skipped, unless external tools are required
/// (CI), where that fails.
fn tmux_or_skip() -> bool {
    if Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(
        !common::external::required(),
        "tmux is required here (CLAUDEMESH_EXTERNAL_CLIENTS=required): .ci/run installs it"
    );
    eprintln!("skipped: tmux is not installed");
    false
}

/// Waits for the exit code the shell around the dashboard writes to `file`.
async fn exit_code(t: &Tmux, file: &Path, what: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(c) = std::fs::read_to_string(file)
            && c.ends_with('\n')
        {
            return c.trim().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what} did not end:\n{}", t.screen());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_live_send_reply_and_agent_loss() {
    if !tmux_or_skip() {
        return;
    }
    let w = World::start().await;
    let alice = w.member("alice").await;
    let bob = w.member("bob").await;
    let alice_agent = AgentProcess::start(&alice).await;
    let bob_agent = AgentProcess::start(&bob).await;
    let mut bc = bob_agent.client().await;
    wait_connected(&mut bc).await;
    let mut ac = alice_agent.client().await;
    wait_connected(&mut ac).await;

    let dir = alice.dir.to_string_lossy().into_owned();
    // A shell around the dashboard writes its exit code once it exits (test harness only; the
    // path is an argument, never spliced into the script).
    let exit_file = w.dir.path().join("tui.exit");
    let script = r#""$0" tui; echo $? > "$1""#;
    let ef = exit_file.to_string_lossy().into_owned();
    let env = [("CLAUDEMESH_CONFIG_DIR", dir.as_str()), ("TERM", "xterm-256color")];
    let t = Tmux::start(w.dir.path(), &env, &["sh", "-c", script, EXE, &ef]);
    t.wait("the dashboard with its agent", 20, |s| s.contains("agent 0.") && s.contains("1 Peers")).await;

    // A second agent's peer appears live.
    register(&mut bc, BOB_SESSION, "bob-desktop", &[]).await;
    wait_peer(&mut ac, "bob-desktop").await;
    t.wait("bob's session in Peers", 15, |s| s.contains("bob-desktop")).await;

    // A message sent from the dashboard arrives at bob.
    t.keys(&["m"]);
    t.wait("the compose box", 5, |s| s.contains("Message on team")).await;
    t.type_text("hello from the dashboard");
    t.keys(&["Enter"]);
    t.wait("the send's confirmation", 10, |s| s.contains("sent to bob-desktop")).await;
    let got = wait_inbox(&mut bc, Some(BOB_SESSION), 1).await;
    assert_eq!(got.messages[0].body, "hello from the dashboard");
    assert_eq!(got.messages[0].from_name, "alice");
    common::take_and_confirm(&mut bc, BOB_SESSION).await;

    // Bob replies; the reply appears in the thread, beside the first message and its state.
    bc.call(send_call("alice", "reply from bob", Priority::Next, Some(BOB_SESSION))).await.unwrap();
    t.keys(&["3"]);
    t.wait("the conversation with bob", 15, |s| s.contains("bob (m_")).await;
    t.keys(&["Enter"]);
    let s = t
        .wait("both messages in the thread, the first one seen", 15, |s| {
            s.contains("hello from the dashboard") && s.contains("reply from bob") && s.contains("✓✓ seen")
        })
        .await;
    assert!(s.contains("you → bob-desktop"), "{s}");
    eprintln!("the thread as the dashboard showed it:\n{s}");

    // The agent goes away: shown, retried; it comes back: the view recovers.
    alice_agent.kill9();
    t.wait("the agent gone", 15, |s| s.contains("agent gone")).await;
    let alice_agent = AgentProcess::start(&alice).await;
    t.keys(&["r"]);
    t.wait("the agent back", 20, |s| s.contains("agent 0.") && !s.contains("agent gone")).await;
    t.wait("the thread again", 15, |s| s.contains("reply from bob")).await;

    // SIGTERM: the dashboard exits cleanly and leaves the alternate screen.
    assert_eq!(t.format("#{alternate_on}"), "1");
    // The dashboard is the shell's child.
    let shell = t.format("#{pane_pid}");
    let pid = String::from_utf8(Command::new("pgrep").args(["-P", &shell]).output().unwrap().stdout).unwrap();
    assert!(Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap().success(), "pid {pid:?}");
    let code = exit_code(&t, &exit_file, "the dashboard after SIGTERM").await;
    assert_eq!(code, "0", "the dashboard's exit code after SIGTERM");
    assert_eq!(t.format("#{alternate_on}"), "0", "the terminal is restored");
    drop(alice_agent);
}

/// `claudemesh up` on a fresh machine, at a terminal, ends in the dashboard showing the new
/// mesh connected; `q` leaves it and `up` exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_opens_the_dashboard() {
    if !tmux_or_skip() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (home, config) = (root.path().join("home"), root.path().join("claudemesh"));
    std::fs::create_dir_all(&home).unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let exit_file = root.path().join("up.exit");
    let script = r#""$0" up --no-claude --name alice --listen "$2"; echo $? > "$1""#;
    let (h, c, ef) = (home.to_string_lossy(), config.to_string_lossy(), exit_file.to_string_lossy());
    let env = [("HOME", &*h), ("CLAUDEMESH_CONFIG_DIR", &*c), ("TERM", "xterm-256color")];
    let t = Tmux::start(root.path(), &env, &["sh", "-c", script, EXE, &ef, &listen]);
    t.wait("the dashboard on the new mesh", 60, |s| s.contains("1 Peers") && s.contains("local ●")).await;
    t.keys(&["5"]);
    t.wait("the Meshes view", 10, |s| s.contains("Meshes (1)") && s.contains("connected")).await;
    t.keys(&["q"]);
    let code = exit_code(&t, &exit_file, "up after q").await;
    assert_eq!(code, "0");
    let down = Command::new(EXE)
        .arg("down")
        .env("HOME", &home)
        .env("CLAUDEMESH_CONFIG_DIR", &config)
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
}

/// What alice types as her secret: it must never be on her screen.
const SECRET: &str = "s3cr3t-Value_42xyz";

/// Waits for `ok`, and checks on every screen seen meanwhile that the secret is not on it.
async fn wait_secret_free(t: &Tmux, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    t.wait(what, secs, |s| {
        assert!(!s.contains(SECRET) && !s.contains("s3cr3t"), "the secret is on screen:\n{s}");
        ok(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_vault_and_skills() {
    if !tmux_or_skip() {
        return;
    }
    let w = World::start().await;
    let alice = w.member("alice").await;
    let bob = w.member("bob").await;
    let alice_agent = AgentProcess::start(&alice).await;
    let bob_agent = AgentProcess::start(&bob).await;
    let mut ac = alice_agent.client().await;
    wait_connected(&mut ac).await;
    let mut bc = bob_agent.client().await;
    wait_connected(&mut bc).await;

    // A skill directory: SKILL.md with front matter, and a text file beside it.
    let skill_dir = w.dir.path().join("deploy-checklist");
    std::fs::create_dir_all(skill_dir.join("refs")).unwrap();
    std::fs::write(
        skill_dir.join("SKILL.md"),
        "---\ndescription: Steps before a deploy\n---\n# Deploy checklist\n\nRun the tests, then tag.\n",
    )
    .unwrap();
    std::fs::write(skill_dir.join("refs/rollback.md"), "How to roll back: redeploy the previous tag.\n")
        .unwrap();

    let dir = alice.dir.to_string_lossy().into_owned();
    let env = [("CLAUDEMESH_CONFIG_DIR", dir.as_str()), ("TERM", "xterm-256color")];
    let t = Tmux::start(w.dir.path(), &env, &[EXE, "tui"]);
    t.wait("the dashboard with its agent", 20, |s| s.contains("agent 0.") && s.contains("7 Vault")).await;

    // Vault: add through the form, the value typed masked.
    t.keys(&["7"]);
    t.wait("the empty Vault view", 15, |s| s.contains("Vault (0)") && s.contains("a adds one")).await;
    t.keys(&["a"]);
    t.wait("the add form", 5, |s| s.contains("Add a secret to your vault on team")).await;
    t.type_text("GH_TOKEN");
    t.keys(&["Tab"]);
    t.type_text(SECRET);
    let masked = "•".repeat(SECRET.chars().count());
    wait_secret_free(&t, "the value masked", 5, |s| s.contains(&masked)).await;
    t.keys(&["Tab", "Tab", "Tab", "Tab"]);
    t.type_text("release bot");
    t.keys(&["Enter"]);
    let s = wait_secret_free(&t, "the entry listed", 15, |s| {
        s.contains("Vault (1)")
            && s.contains("GH_TOKEN")
            && s.contains("release bot")
            && !s.contains("Add a secret")
    })
    .await;
    assert!(s.contains("$vault:GH_TOKEN"), "{s}");
    let listed: VaultListReply = ac.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert_eq!(listed.entries.iter().map(|e| e.entry.key.as_str()).collect::<Vec<_>>(), ["GH_TOKEN"]);

    // Delete, after a confirmation naming key and mesh.
    t.keys(&["d"]);
    wait_secret_free(&t, "the delete confirmation", 5, |s| {
        s.contains("Delete GH_TOKEN from your vault on team?")
    })
    .await;
    t.keys(&["y"]);
    wait_secret_free(&t, "the entry gone", 15, |s| s.contains("Vault (0)")).await;
    let listed: VaultListReply = ac.request(AgentCall::VaultList { mesh: None }).await.unwrap();
    assert!(listed.entries.is_empty(), "{listed:?}");

    // Skills: share the directory (name and description by default), see it, read it.
    t.keys(&["8"]);
    t.wait("the Skills view", 15, |s| s.contains("Skills (0)")).await;
    t.keys(&["s"]);
    t.wait("the share form", 5, |s| s.contains("Share a skill with team")).await;
    t.type_text(&skill_dir.to_string_lossy());
    t.keys(&["Enter"]);
    t.wait("the skill listed", 15, |s| {
        s.contains("Skills (1)") && s.contains("deploy-checklist") && s.contains("Steps before a deploy")
    })
    .await;
    t.keys(&["Enter"]);
    t.wait("the skill in the reader", 10, |s| {
        s.contains("Skill deploy-checklist") && s.contains("Run the tests, then tag.")
    })
    .await;
    t.keys(&["G"]);
    t.wait("its file in the reader", 5, |s| s.contains("refs/rollback.md") && s.contains("How to roll back"))
        .await;
    t.keys(&["Escape"]);

    // Bob's skill: alice may not remove it, and is told why.
    let bobs = Skill {
        name: "bobs-notes".into(),
        description: "Bob's notes".into(),
        instructions: "Notes.".into(),
        tags: vec![],
        files: Default::default(),
    };
    let share = AgentCall::SkillShare(Box::new(SkillShareParams { mesh: None, skill: bobs }));
    bc.call(share).await.unwrap();
    t.wait("bob's skill, live", 15, |s| s.contains("Skills (2)") && s.contains("bobs-notes")).await;
    // Rows are by name: bobs-notes, then deploy-checklist.
    t.keys(&["g", "d"]);
    t.wait("the remove confirmation", 5, |s| s.contains("Remove the skill bobs-notes from team?")).await;
    t.keys(&["y"]);
    t.wait("not allowed", 10, |s| s.contains("not allowed: only its author or an admin")).await;

    // Her own: removed.
    t.keys(&["G", "d"]);
    t.wait("the remove confirmation", 5, |s| s.contains("Remove the skill deploy-checklist from team?"))
        .await;
    t.keys(&["y"]);
    t.wait("the skill gone", 15, |s| s.contains("Skills (1)") && !s.contains("deploy-checklist")).await;
    let left: SkillListReply = ac.request(AgentCall::SkillList { query: None, mesh: None }).await.unwrap();
    assert_eq!(left.skills.iter().map(|x| x.skill.name.as_str()).collect::<Vec<_>>(), ["bobs-notes"]);
    t.keys(&["q"]);
}
