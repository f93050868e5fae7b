//! What the invite verbs show a person: `invite create --expires` takes a lifetime with a unit,
//! `invite inspect` the id `revoke` needs, the groups and the expiry as a date, `invite list` the
//! expiry date and groups of each invite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use claudemesh_agent::Paths;
use claudemesh_broker::testkit::RunningBroker;
use common::*;

/// Whether `s` starts with a local date like `2025-12-06 15:04`.
fn starts_with_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_show_their_id_groups_and_expiry_date() {
    let dir = tempfile::tempdir().unwrap();
    let broker = RunningBroker::start("127.0.0.1:0", broker_config(dir.path())).await.unwrap();
    let token = broker.data_dir.join("admin.token");
    let alice = Paths::new(dir.path().join("alice"));
    let args =
        ["mesh", "create", "team", "--broker", &broker.url, "--admin-token-file", token.to_str().unwrap()];
    let (code, out, err) = cli(&alice, &args);
    assert_eq!(code, 0, "{out}{err}");

    // A lifetime without a unit, or past a year, is refused before anything is created.
    for (expires, want) in [("2", "give a unit: 30m, 24h, 7d"), ("400d", "at most a year")] {
        let (code, _, err) = cli(&alice, &["invite", "create", "--expires", expires]);
        assert_ne!(code, 0);
        assert!(err.contains(want), "{expires}: {err}");
    }
    let (code, out, err) = cli(
        &alice,
        &["invite", "create", "--expires", "1d12h", "--group", "backend:lead", "--group", "ops", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created["invite_id"].as_str().unwrap();
    let link = created["url"].as_str().unwrap();

    let (code, out, err) = cli(&alice, &["invite", "inspect", link]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("invite id:  {id} (`claudemesh invite revoke {id}`")), "{out}");
    assert!(out.contains("groups:     backend:lead, ops"), "{out}");
    let expires = out.lines().find_map(|l| l.strip_prefix("expires:    ")).unwrap();
    // 36 hours from creation, less the moments since.
    let left = ["(in 1d 12h)", "(in 1d 11h)"];
    assert!(starts_with_date(expires) && left.iter().any(|l| expires.ends_with(l)), "{expires}");

    let (code, out, err) = cli(&alice, &["invite", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("active") && line.contains("0/1 uses"), "{line}");
    let (_, rest) = line.split_once(" expires ").unwrap_or_else(|| panic!("{line}"));
    assert!(starts_with_date(rest), "{line}");
    assert!(line.ends_with("groups backend:lead, ops"), "{line}");
    cli(&alice, &["agent", "stop"]);
    broker.stop().await.unwrap();
}
