//! The README's first run, as a new user types it: `claudemesh up` on a fresh machine, a
//! teammate joining with the printed invite over the broker's public URL, a message each way,
//! `up` again (harmless), a crash of everything (as a reboot would), and `down` keeping data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_claudemesh");

/// One person: a HOME and a claudemesh config dir of their own.
struct User {
    home: PathBuf,
    config: PathBuf,
}

impl User {
    fn new(root: &std::path::Path, name: &str) -> Self {
        let home = root.join(name).join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self { home, config: root.join(name).join("claudemesh") }
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(EXE)
            .args(args)
            .env("HOME", &self.home)
            .env("CLAUDEMESH_CONFIG_DIR", &self.config)
            .env_remove("CLAUDEMESH_BROKER_URL")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "`claudemesh {}` failed:\n{out}\n{err}", args.join(" "));
        out
    }

    /// Retries `args` until its output contains `want` (links and presence settle on their own).
    async fn until(&self, args: &[&str], want: &str) -> String {
        let mut last = String::new();
        for _ in 0..300 {
            let (_, out, err) = self.run(args);
            if out.contains(want) {
                return out;
            }
            last = format!("{out}{err}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("`claudemesh {}` never printed {want:?}; last:\n{last}", args.join(" "));
    }

    /// Sends once the name resolves (the directory settles on its own); retries only refusals,
    /// so no message is sent twice.
    async fn send(&self, to: &str, body: &str) {
        let mut last = String::new();
        for _ in 0..300 {
            let (code, out, err) = self.run(&["send", to, body]);
            if code == 0 {
                return;
            }
            last = format!("{out}{err}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("`claudemesh send {to}` kept failing: {last}");
    }

    fn agent_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.config.join("agent.pid")).ok()?.trim().parse().ok()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_invite_join_message_reboot_down() {
    let root = tempfile::tempdir().unwrap();
    let alice = User::new(root.path(), "alice");
    let bob = User::new(root.path(), "bob");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Teammates reach the broker by another name than the one alice's own agent uses, so the
    // invite provably carries the public URL.
    let public = format!("ws://localhost:{port}/ws");

    let out = alice.ok(&[
        "up",
        "--yes",
        "--no-tui",
        "--name",
        "alice",
        "--listen",
        &listen,
        "--public-url",
        &public,
    ]);
    assert!(out.contains("set up a broker on this machine"), "{out}");
    assert!(out.contains("created mesh local"), "{out}");
    assert!(out.contains(&format!("mesh local: connected ws://127.0.0.1:{port}/ws")), "{out}");
    assert!(out.contains("claudemesh launch") && out.contains("claudemesh invite create"), "{out}");
    let data = alice.config.join("broker");
    assert!(data.join("broker.redb").exists() && data.join("admin.token").exists());

    // Running it again changes nothing and shows the same mesh.
    let again = alice.ok(&["up", "--yes", "--no-tui"]);
    assert!(again.contains("nothing needed changing"), "{again}");
    assert!(again.contains("mesh local: connected"), "{again}");
    assert!(!again.contains("created mesh"), "{again}");
    // Another --name for the existing mesh is not taken silently.
    let renamed = alice.ok(&["up", "--yes", "--no-tui", "--name", "Dr. Who"]);
    assert!(renamed.contains(r#"you are already "alice" in mesh local"#), "{renamed}");
    assert!(renamed.contains("claudemesh launch --name 'Dr. Who'"), "{renamed}");
    assert!(!alice.ok(&["up", "--yes", "--no-tui", "--name", "alice"]).contains("already"));

    let link = alice.ok(&["invite", "create", "--uses", "1"]);
    let link = link.lines().find(|l| l.starts_with("claudemesh://join/")).unwrap().to_string();
    let inspect = bob.ok(&["invite", "inspect", &link, "--json"]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        inspect["payload"]["broker_url"],
        public.as_str(),
        "the invite carries the public URL: {inspect}"
    );

    let out = bob.ok(&["join", &link, "--name", "bob"]);
    assert!(out.contains("joined mesh local as bob"), "{out}");
    // `join` started bob's agent: he is online for alice without running anything else, and a
    // send by his name works at once (the agent asks the broker about a name it does not know).
    let members = alice.until(&["members"], "bob").await;
    assert!(members.contains("alice (you)"), "{members}");
    let out = alice.ok(&["send", "bob", "the migration is done"]);
    assert!(out.contains("queued message"), "{out}");
    let bob_online =
        |out: &str| out.lines().any(|l| l.trim_start().starts_with("bob ") && l.contains("online"));
    for _ in 0..200 {
        if bob_online(&alice.ok(&["members"])) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bob_online(&alice.ok(&["members"])), "bob's agent runs after join");
    // A role change and a group change in a row: each confirmation shows both, as they are now.
    alice.ok(&["member", "set", "bob", "--role", "admin"]);
    let out = alice.ok(&["member", "set", "bob", "--group", "backend:lead"]);
    assert!(out.contains("admin") && out.contains("backend:lead"), "{out}");
    let out = alice.ok(&["member", "set", "bob", "--role", "member"]);
    assert!(out.contains("role member") && out.contains("backend:lead"), "{out}");

    let inbox = bob.until(&["inbox"], "the migration is done").await;
    assert!(inbox.contains("alice"), "{inbox}");
    bob.send("alice", "rebasing now").await;
    let inbox = alice.until(&["inbox"], "rebasing now").await;
    assert!(inbox.contains("bob"), "{inbox}");

    // A crash of the agent (as at a reboot) takes the broker with it; the next command brings
    // both back, with the same mesh and nothing to redo.
    let pid = alice.agent_pid().unwrap();
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the broker stopped with its agent");
    let out = alice.until(&["status"], "local            connected").await;
    assert!(out.contains("agent: running"), "{out}");
    alice.send("bob", "back after the reboot").await;
    bob.until(&["inbox"], "back after the reboot").await;

    // `down` stops the agent and the broker and keeps the data; `up` brings the same mesh back.
    let out = alice.ok(&["down"]);
    assert!(out.contains("stopped the agent and the broker"), "{out}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(alice.agent_pid().is_none());
    assert!(data.join("broker.redb").exists());
    let out = alice.ok(&["up", "--yes", "--no-tui"]);
    assert!(out.contains("mesh local: connected"), "{out}");
    assert!(!out.contains("created mesh"), "{out}");
    bob.send("alice", "still here").await;
    alice.until(&["inbox"], "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_says_which_address_is_taken() {
    let root = tempfile::tempdir().unwrap();
    let carol = User::new(root.path(), "carol");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out, err) = carol.run(&["up", "--yes", "--no-tui", "--listen", &addr]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains(&addr) && err.contains("in use") && err.contains("--listen"), "{err}");
    // Nothing half-made stays behind: a later `up` on a free address works.
    let out = carol.ok(&["up", "--yes", "--no-tui", "--no-claude", "--listen", "127.0.0.1:0"]);
    assert!(out.contains("created mesh local"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_a_team_on_every_interface() {
    let root = tempfile::tempdir().unwrap();
    let dana = User::new(root.path(), "dana");
    let erin = User::new(root.path(), "erin");
    let port = free_port();
    // 127.0.0.2 stands for this machine's LAN address: the broker listens on every interface,
    // and the teammate reaches it by an address other than the one dana's agent uses.
    let public = format!("ws://127.0.0.2:{port}/ws");
    let listen = format!("0.0.0.0:{port}");
    let out = dana.ok(&[
        "up",
        "--yes",
        "--no-tui",
        "--no-claude",
        "--name",
        "dana",
        "--listen",
        &listen,
        "--public-url",
        &public,
    ]);
    assert!(out.contains(&format!("teammates use {public}")), "{out}");
    assert!(out.contains(&format!("mesh local: connected ws://127.0.0.1:{port}/ws")), "{out}");
    let link = dana.ok(&["invite", "create"]);
    let link = link.lines().find(|l| l.starts_with("claudemesh://join/")).unwrap().to_string();
    let out = erin.ok(&["join", &link, "--name", "erin"]);
    assert!(out.contains(&public), "erin's agent connects to the public URL: {out}");
    erin.until(&["status"], "connected").await;
    dana.send("erin", "hello over the LAN").await;
    erin.until(&["inbox"], "hello over the LAN").await;
    erin.send("dana", "hello back").await;
    dana.until(&["inbox"], "hello back").await;
    // A second mesh on the broker `up` runs here needs no admin token file: it is dana's own.
    let out = dana.ok(&[
        "mesh",
        "create",
        "ops",
        "--broker",
        &format!("ws://127.0.0.1:{port}/ws"),
        "--name",
        "dana",
    ]);
    assert!(out.contains("created mesh ops"), "{out}");
}
