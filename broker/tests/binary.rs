//! The real `claudemesh-broker` binary: `serve` announces its port, answers, and on SIGTERM
//! closes sockets with 1001 and exits 0; `mesh create` works on the data directory offline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use claudemesh_broker::testkit::{Client, ClientError, Identity};
use claudemesh_protocol::crypto::MemberKeypair;
use claudemesh_protocol::frames::ServerFrame;

const EXE: &str = env!("CARGO_BIN_EXE_claudemesh-broker");

/// Kills the child if the test fails half-way.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(EXE)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    (Child(child), url)
}

#[tokio::test]
async fn offline_mesh_create_then_serve_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = MemberKeypair::generate();
    let out = Command::new(EXE)
        .args(["mesh", "create", "team", "--json", "--pubkey", &key.public_hex(), "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let admin = Identity {
        mesh_id: v["mesh_id"].as_str().unwrap().into(),
        member_id: v["member_id"].as_str().unwrap().into(),
        key,
    };
    // A second create with the same slug is refused with a clear message.
    let again = Command::new(EXE)
        .args(["mesh", "create", "team", "--pubkey", &admin.key.public_hex(), "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let (mut child, url) = serve(dir.path());
    let (mut c, ack) = Client::connect_as(&url, &admin).await.unwrap();
    assert!(matches!(ack, ServerFrame::HelloAck { .. }), "{ack:?}");
    // While serving, the data dir is locked: offline create says the broker may be running.
    let locked = Command::new(EXE)
        .args(["mesh", "create", "other", "--pubkey", &MemberKeypair::generate().public_hex(), "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!locked.status.success());
    assert!(
        String::from_utf8_lossy(&locked.stderr).contains("running"),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    match c.recv_match(|_| false).await {
        Err(ClientError::Closed(Some(r))) => assert!(r.starts_with("1001"), "{r}"),
        other => panic!("{other:?}"),
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The admin token was generated 0600 on first start.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("admin.token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn logs_are_plain_text_off_a_terminal_and_every_file_is_private() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state").join("broker");
    let mut child = Command::new(EXE)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut child = Child(child);
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
    // Once a connection is welcomed, the broker has written its admin token.
    let mut c = Client::connect(&url).await.unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(c.mesh_create(token.trim(), "team", "admin").await.unwrap().is_ok());
    c.close().await;
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.0.wait().unwrap().success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    assert!(log.contains("broker listening") && log.contains("mesh created"), "{log}");
    assert!(!log.contains("\x1b["), "ANSI escapes in a piped log:\n{log:?}");

    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("broker.redb")), 0o600);
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    // Offline `mesh create` into a fresh directory makes it private too.
    let offline = dir.path().join("offline");
    let out = Command::new(EXE)
        .args(["mesh", "create", "team", "--pubkey", &MemberKeypair::generate().public_hex(), "--data"])
        .arg(&offline)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&offline), 0o700);
    assert_eq!(mode(&offline.join("broker.redb")), 0o600);
}

#[tokio::test]
async fn a_store_left_readable_by_an_older_broker_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = MemberKeypair::generate().public_hex();
    let create = |slug: &str| {
        let out = Command::new(EXE)
            .args(["mesh", "create", slug, "--pubkey", &key, "--data"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    create("one");
    let db = dir.path().join("broker.redb");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    create("two");
    assert_eq!(mode(&db), 0o600);
}
