//! `claudemesh logs NAME [-n N] [-f]`: the newest lines of a service's log; with `-f`, then
//! every new line until Ctrl-C (a `services` subscription following the service). Log lines
//! are the service's own output: control characters are neutralised before printing.

use std::process::ExitCode;

use claudemesh_protocol::frames::Event;
use claudemesh_protocol::local::{AgentCall, LocalEvent, LogsReply, Topic};
use claudemesh_protocol::text;

use crate::cli::LogsArgs;
use crate::out::outln;

fn print_lines(lines: &[String], json: bool, name: &str, mesh: &str) -> anyhow::Result<()> {
    for l in lines {
        if json {
            outln!("{}", serde_json::json!({ "mesh": mesh, "name": name, "line": l }))?;
        } else {
            outln!("{}", text::terminal(l))?;
        }
    }
    Ok(())
}

pub async fn run(a: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    if a.follow {
        // Subscribe before reading the tail, so no line falls between the two.
        c.subscribe_with(vec![Topic::Services], None, a.mesh.clone(), Some(a.name.clone())).await?;
    }
    let r: LogsReply = c
        .request(AgentCall::ServiceLogs { name: a.name.clone(), lines: a.lines, mesh: a.mesh.clone() })
        .await?;
    if a.json && !a.follow {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_lines(&r.lines, a.json, &r.name, &r.mesh)?;
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let ev = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            ev = c.next_event() => ev?,
        };
        match ev.2 {
            LocalEvent::Services { mesh, event: Event::McpLog { name, lines } } if name == r.name => {
                print_lines(&lines, a.json, &name, &mesh)?;
            }
            LocalEvent::Services { event: Event::McpUndeployed { name }, .. } if name == r.name => {
                eprintln!("{} was undeployed", text::name(&name));
                return Ok(ExitCode::SUCCESS);
            }
            _ => {}
        }
    }
}
