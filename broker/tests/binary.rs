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
