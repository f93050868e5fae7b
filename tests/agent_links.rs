//! Broker links recover on their own: a refused hello or a lost connection retries with
//! backoff and reconnects without an agent restart; only a removed member and a key in use by
//! another agent stop for good. `status` and `doctor` say which, why, and what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use claudemesh_broker::testkit::{Client, RunningBroker};
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, Priority, ServerFrame};
use claudemesh_protocol::local::LinkState;
use common::fake_broker::{Answer, FakeBroker};
use common::*;
use serde_json::Value;

/// `claudemesh doctor --json`'s check for the link of mesh `team`.
fn doctor_link(paths: &claudemesh_agent::Paths) -> Value {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(EXE)
        .args(["doctor", "--json"])
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .env("HOME", home.path())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().find(|c| c["check"] == "broker link team").cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_link_keeps_retrying_and_recovers_without_a_restart() {
    let mut w = World::start().await;
    let (alice, mut a) = connected_agent(&w, "alice").await;
    // The broker comes back without its data (a bad restore): it does not know the mesh.
    w.stop_broker().await;
    let other = tempfile::tempdir().unwrap();
    let empty = RunningBroker::start(&w.addr, broker_config(other.path())).await.unwrap();
    let st = wait_mesh_status(&mut a, "a refusal being retried", |m| {
        m.refusal.is_some() && m.link == LinkState::Disconnected
    })
    .await;
    assert!(st.retrying, "{st:?}");
    assert!(st.retry_in_secs.is_some(), "{st:?}");
    let detail = st.detail.as_deref().unwrap();
    assert!(detail.contains("refused"), "{st:?}");
    assert!(!detail.contains("leave"), "nothing advises leaving a mesh the member is still in: {st:?}");
    let (_, text, _) = cli(&alice.paths, &["status"]);
    assert!(text.contains("[retrying"), "{text}");
    let d = doctor_link(&alice.paths);
    assert_eq!(d["status"], "fail", "{d}");
    assert!(d["detail"].as_str().unwrap().contains("retrying after the broker's refusal"), "{d}");
    assert!(d["fix"].as_str().unwrap().contains("keeps retrying"), "{d}");
    assert!(!d["fix"].as_str().unwrap().contains("leave"), "{d}");

    // The real broker is back: the same agent reconnects on its own.
    empty.stop().await.unwrap();
    w.start_broker().await;
    let st = wait_mesh_status(&mut a, "connected again", |m| m.link == LinkState::Connected).await;
    assert!(st.refusal.is_none() && st.retry_in_secs.is_none(), "{st:?}");
    assert!(!st.retrying);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_retrying_and_is_told_how_to_clear_it() {
    let w = World::start().await;
    let (alice, mut a) = connected_agent(&w, "alice").await;
    let alice_id = alice_member_id(&alice.paths);
    let (mut admin, _) = Client::connect_as(&w.url(), &w.admin).await.unwrap();
    let req = admin.next_req();
    let r = admin
        .request(&ClientFrame::MemberRemove { statement: None, req, member_id: alice_id })
        .await
        .unwrap();
    assert_eq!(r, ServerFrame::Ok { req });
    let st = wait_mesh_status(&mut a, "refused", |m| m.link == LinkState::Refused).await;
    assert!(!st.retrying, "{st:?}");
    assert!(st.detail.as_deref().unwrap().contains("claudemesh leave team"), "{st:?}");
    let (_, text, _) = cli(&alice.paths, &["status"]);
    assert!(text.contains("refused") && text.contains("[not retrying]"), "{text}");
    let d = doctor_link(&alice.paths);
    assert_eq!(d["status"], "fail");
    assert!(d["fix"].as_str().unwrap().contains("`claudemesh leave team`"), "{d}");
    // A send queued meanwhile was sealed with the key `leave` deletes: leaving fails it, so a
    // rejoin never sends it under the new membership.
    let (code, out, err) = cli(&alice.paths, &["send", "admin", "queued while removed", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let queued: Value = serde_json::from_str(&out).unwrap();
    let queued_id = queued["id"].as_str().unwrap().to_string();
    // Leaving works without the broker's help: it already forgot the member.
    let (code, out, err) = cli(&alice.paths, &["leave", "team", "--yes", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["broker_told"], false, "{v}");
    let (_, out, _) = cli(&alice.paths, &["list", "--json"]);
    assert_eq!(out.trim(), "[]");
    let (_, out, err) = cli(&alice.paths, &["message-status", &queued_id, "--json"]);
    assert!(out.contains("failed") && out.contains("you left mesh team"), "{out} {err}");
}

fn alice_member_id(paths: &claudemesh_agent::Paths) -> String {
    claudemesh_agent::Config::load(paths).unwrap().meshes[0].member_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_name_the_agent_process_and_only_key_in_use_stops_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBroker::start(Answer::Refuse(ErrorCode::NotFound, "no mesh mesh_fake here".into())).await;
    let paths = fake.member_config(dir.path());
    let agent = RunningAgent::start(&paths).await;
    let mut c = agent.client().await;
    fake.wait_hellos(2).await;
    let st =
        wait_mesh_status(&mut c, "the not_found refusal", |m| refused_with(m, ErrorCode::NotFound)).await;
    assert!(st.retrying, "{st:?}");
    assert!(!st.detail.as_deref().unwrap_or("").contains("leave"), "{st:?}");
    let first = {
        let h = fake.hellos.lock().unwrap();
        let ids: Vec<_> =
            h.iter().map(|h| h.instance.clone().expect("every hello names the agent")).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "one instance per agent process: {ids:?}");
        assert!(ids[0].id.len() == 32 && ids[0].id.chars().all(|c| c.is_ascii_hexdigit()), "{ids:?}");
        assert!(ids[0].started_at > 1_600_000_000_000, "unix ms: {ids:?}");
        ids[0].clone()
    };

    // The broker now says another agent holds the key: this agent stops and says why.
    let msg = "another agent (started earlier) uses this key; join with your own invite";
    fake.answer(Answer::Refuse(ErrorCode::KeyInUse, msg.into()));
    let st = wait_mesh_status(&mut c, "key_in_use", |m| m.link == LinkState::KeyInUse).await;
    assert!(!st.retrying, "{st:?}");
    assert!(st.detail.as_deref().unwrap().contains(msg), "the broker's advice is shown: {st:?}");
    let d = doctor_link(&paths);
    assert_eq!(d["status"], "fail");
    assert!(d["fix"].as_str().unwrap().contains("own identity"), "{d}");
    let n = fake.hello_count();
    // A retry would have come within the backoff, which is at most a few seconds here.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.hello_count(), n, "no retry after key_in_use");

    // A restarted agent is a new instance and tries again.
    drop(c);
    agent.stop().await;
    fake.answer(Answer::Accept(None));
    let agent = RunningAgent::start(&paths).await;
    let mut c = agent.client().await;
    wait_connected(&mut c).await;
    let last = fake.hellos.lock().unwrap().last().cloned().unwrap();
    assert_ne!(last.instance.unwrap().id, first.id, "a new agent process draws a new instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_by_name_while_the_link_is_down_says_the_link_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBroker::start(Answer::Refuse(ErrorCode::Unavailable, "broker is starting".into())).await;
    let paths = fake.member_config(dir.path());
    let agent = RunningAgent::start(&paths).await;
    let mut c = agent.client().await;
    wait_mesh_status(&mut c, "a refusal", |m| refused_with(m, ErrorCode::Unavailable)).await;
    let e = c.call(send_call("bob", "hi", Priority::Next, None)).await.unwrap_err().to_string();
    assert!(e.contains("link") && e.contains("down") && e.contains("claudemesh status"), "{e}");
    assert!(e.contains("broker is starting"), "it repeats what status shows: {e}");
    assert!(!e.contains("no peer"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_real_agents_with_one_key_end_with_the_later_one_stopped() {
    let w = World::start().await;
    let first = w.member("bob").await;
    let a1 = AgentProcess::start(&first).await;
    let mut c1 = a1.client().await;
    wait_connected(&mut c1).await;
    // The whole config dir copied to a second place (as to a second machine): the same key.
    let copy = claudemesh_agent::Paths::new(w.dir.path().join("agent-bob-copy"));
    copy.ensure_dir().unwrap();
    std::fs::copy(first.config(), copy.config()).unwrap();
    let a2 = AgentProcess::start(&copy).await;
    let mut c2 = a2.client().await;
    // The real broker counts the replacements and stops the agent that started later.
    let st = wait_mesh_status(&mut c2, "key_in_use", |m| m.link == LinkState::KeyInUse).await;
    assert!(st.detail.as_deref().unwrap().contains("--local-only"), "{st:?}");
    let check = doctor_link(&copy);
    assert_eq!(check["status"], "fail", "{check}");
    // The first agent keeps (or gets back) its link, and keeps it.
    wait_mesh_status(&mut c1, "connected", |m| m.link == LinkState::Connected).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mesh_status(&mut c1).await.link, LinkState::Connected);
    assert_eq!(mesh_status(&mut c2).await.link, LinkState::KeyInUse);
    a2.kill9();
    a1.kill9();
}
