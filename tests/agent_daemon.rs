//! The agent process's housekeeping: its config watch reacts to each change once (its own reads
//! do not wake it), a broken config.json is reported once per change, and an auto-started agent
//! keeps none of its caller's descriptors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use claudemesh_agent::{Config, Paths};
use common::*;

fn log(paths: &Paths) -> String {
    std::fs::read_to_string(paths.dir.join("test-agent.log")).unwrap_or_default()
}

fn count(paths: &Paths, needle: &str) -> usize {
    log(paths).matches(needle).count()
}

const RELOAD: &str = "config changed; reloading";
const BROKEN: &str = "config changed but cannot be read";
const WOKE: &str = "config watch woke";

/// Waits until the agent log holds `n` lines with `needle` (10 s at most).
async fn wait_count(paths: &Paths, needle: &str, n: usize) {
    for _ in 0..400 {
        if count(paths, needle) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {n} × {needle:?} in the log:\n{}", log(paths));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_edit_is_one_reload_and_a_broken_file_is_reported_once_per_change() {
    let w = World::start().await;
    let paths = w.member("alice").await;
    let agent = AgentProcess::start_with_env(&paths, &[("CLAUDEMESH_DEBUG", "1")]).await;
    let mut c = agent.client().await;
    wait_connected(&mut c).await;
    assert_eq!(count(&paths, RELOAD), 0, "{}", log(&paths));

    let mut cfg = Config::load(&paths).unwrap();
    cfg.display_name = Some("alice-renamed".into());
    cfg.save(&paths).unwrap();
    wait_count(&paths, RELOAD, 1).await;
    // Its own reads of config.json do not wake it again: over a second and a half it stays
    // quiet (reacting to them, it woke about seven times a second, forever).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&paths, RELOAD), 1, "{}", log(&paths));
    assert!(count(&paths, WOKE) <= 2, "woken by its own reads:\n{}", log(&paths));

    std::fs::write(paths.config(), "{ broken").unwrap();
    wait_count(&paths, BROKEN, 1).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(count(&paths, BROKEN), 1, "one report per change:\n{}", log(&paths));
    std::fs::write(paths.config(), "{ broken, differently").unwrap();
    wait_count(&paths, BROKEN, 2).await;
    // Fixed again: reloaded once, the mesh is still there.
    cfg.save(&paths).unwrap();
    wait_count(&paths, RELOAD, 2).await;
    assert_eq!(link_state(&mut c).await, claudemesh_protocol::local::LinkState::Connected);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((count(&paths, RELOAD), count(&paths, BROKEN)), (2, 2), "{}", log(&paths));
}

#[test]
fn an_auto_started_agent_keeps_none_of_the_callers_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path().join("cm"));
    let bin = std::path::Path::new(EXE).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    // fd 3 is the pipe to `cat`: `cat` ends when every holder of it has closed it.
    let line = "( sh -c 'exec 3>&1; claudemesh status >/dev/null' | cat )";
    let mut child = std::process::Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .env("CLAUDEMESH_CONFIG_DIR", &paths.dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let agent_running = paths.socket().exists();
    let _ = cli(&paths, &["agent", "stop"]);
    assert!(agent_running, "status started an agent");
    let status = status.expect("the pipeline waited for the agent: it holds the caller's fd 3");
    assert!(status.success(), "{status:?}");
}
