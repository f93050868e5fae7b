//! The agent process's housekeeping: an auto-started agent keeps none of its caller's
//! descriptors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use claudemesh_agent::Paths;
use common::*;

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
