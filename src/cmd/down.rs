//! `claudemesh down`: stop what `claudemesh up` started — the agent and the broker it runs on
//! this machine — and keep all data. The broker stays off (even when a later command starts
//! the agent again) until the next `claudemesh up`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, ClientError, Config};
use claudemesh_protocol::local::AgentCall;
use serde_json::json;

use crate::out::outln;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut cfg = Config::load(&paths)?;
    let broker = cfg.local_broker.clone();
    if let Some(b) = cfg.local_broker.as_mut().filter(|b| b.enabled) {
        b.enabled = false;
        cfg.save(&paths)?;
    }
    let agent_was_running = match AgentClient::connect(&paths, "cli").await {
        Ok(mut c) => {
            c.call(AgentCall::Shutdown).await?;
            true
        }
        Err(ClientError::NotRunning(_)) => false,
        Err(e) => return Err(e.into()),
    };
    // The agent stops its broker on the way out; wait for both to be gone.
    let start = Instant::now();
    let broker_addr = broker.as_ref().map(|b| b.local_addr());
    loop {
        let agent_gone = !paths.socket().exists() && !paths.pid().exists();
        let broker_gone = match &broker_addr {
            Some(a) => tokio::net::TcpStream::connect(a).await.is_err(),
            None => true,
        };
        if agent_gone && broker_gone {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            anyhow::bail!(
                "the agent or the broker did not stop within 15 s; see {} and {}",
                paths.log().display(),
                claudemesh_agent::local_broker::log_path(&paths).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if json {
        outln!(
            "{}",
            json!({"agent_stopped": agent_was_running, "broker_stopped": broker.is_some(), "data": broker.map(|b| b.data)})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match (&broker, agent_was_running) {
        (Some(b), _) => outln!(
            "stopped the agent and the broker on this machine; data kept in {} and {}; `claudemesh up` starts them again",
            b.data.display(),
            paths.dir.display()
        )?,
        (None, true) => {
            outln!("stopped the agent; `claudemesh up` (or any claudemesh command) starts it again")?
        }
        (None, false) => outln!("nothing was running")?,
    }
    Ok(ExitCode::SUCCESS)
}
