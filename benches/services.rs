//! What a shared-service call through the mesh costs: the latency a `service_call` through
//! agent → broker → runner → child adds over the child's own time (p50, p99), and the calls per
//! second one service takes from several agent-socket clients.
//!
//! `cargo build --release -p claudemesh-broker --bins && cargo bench --bench services` (the
//! fixture MCP server, `claudemesh-mcp-fixture`, must sit beside the `claudemesh` binary). A real
//! broker on 127.0.0.1:0 with a temp redb whose runner is `claudemesh broker runner`; the admin's
//! agent deploys the fixture as a `command` service, `tools`; bob's agent (a process of the
//! built `claudemesh` binary, as `tests/common` starts them) calls its `echo`.
//!
//! Each repetition times `CALLS` sequential `echo` calls to the fixture alone (an rmcp client
//! over the child's stdio) and then `CALLS` through bob's agent socket, after a warm-up; the
//! added latency is the mesh's percentile minus the child's, in the same repetition. Then
//! `CLIENTS` socket clients call at once for `CLAUDEMESH_BENCH_SECS` (default 2). 5 repetitions;
//! the table gives the median and the min–max. Run without `--bench` (as `cargo test --benches`
//! does), it only checks that every step works, with tiny counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use claudemesh_agent::AgentClient;
use common::{AgentProcess, World, fixture_exe, wait_connected};
use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

const REPS: usize = 5;
const SERVICE: &str = "tools";
/// Sequential calls timed per repetition, for each of the two latency measures.
const CALLS: usize = 1000;
/// Calls made before timing, on each side.
const WARM_CALLS: usize = 100;
/// Agent-socket clients calling at once for the throughput.
const CLIENTS: usize = 8;

/// The agent calls, one function each: the only code that knows the local API's shape.
mod calls {
    use anyhow::{Result, ensure};
    use claudemesh_agent::AgentClient;
    use claudemesh_protocol::frames::{Secret, ServiceStatus};
    use claudemesh_protocol::local::{
        AgentCall, CallParams, CallReply, DeployParams, DeployReply, LocalSource,
    };
    use serde_json::json;

    /// Deploys `argv` as a mesh-wide `command` service (needs the broker's admin token).
    pub async fn deploy(c: &mut AgentClient, name: &str, argv: Vec<String>, admin_token: &str) -> Result<()> {
        let p = DeployParams {
            mesh: None,
            name: name.into(),
            source: LocalSource::Command { argv },
            description: String::new(),
            args: vec![],
            entry: None,
            env: Default::default(),
            scope: Some(json!("mesh")),
            admin_token: Some(Secret(admin_token.into())),
        };
        let r: DeployReply = c.request(AgentCall::ServiceDeploy(Box::new(p))).await?;
        ensure!(r.status == ServiceStatus::Running, "deploy did not end running: {r:?}");
        ensure!(r.tools.iter().any(|t| t.name == "echo"), "no echo tool: {r:?}");
        Ok(())
    }

    /// `service_call {service, tool: "echo", arguments: {text}}`; checks the text came back.
    pub async fn echo(c: &mut AgentClient, service: &str, text: &str) -> Result<()> {
        let r: CallReply = c
            .request(AgentCall::ServiceCall(CallParams {
                mesh: None,
                service: service.into(),
                tool: "echo".into(),
                arguments: json!({ "text": text }),
                timeout_ms: None,
            }))
            .await?;
        let got = r.result["content"][0]["text"].as_str();
        ensure!(got == Some(text), "echo returned {}", r.result);
        Ok(())
    }
}

type Child = RunningService<RoleClient, ()>;

/// The fixture alone, as an rmcp client over its stdio.
async fn start_child() -> Result<Child> {
    let cmd = tokio::process::Command::new(fixture_exe());
    let transport = TokioChildProcess::new(cmd).context("spawn the fixture")?;
    Ok(().serve(transport).await?)
}

async fn child_echo(c: &Child, text: &str) -> Result<()> {
    let Value::Object(args) = json!({ "text": text }) else { unreachable!() };
    let r = c.call_tool(CallToolRequestParams::new("echo").with_arguments(args)).await?;
    let got = r.content.first().and_then(|b| b.as_text()).map(|t| t.text.as_str());
    ensure!(got == Some(text), "echo returned {r:?}");
    Ok(())
}

/// The `q` quantile (nearest rank) of sorted `s`, in milliseconds.
fn pct(s: &[Duration], q: f64) -> f64 {
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i].as_secs_f64() * 1e3
}

/// p50 and p99 of `calls` sequential calls of `call` after `warm` untimed ones, in ms.
async fn latencies(
    warm: usize,
    calls: usize,
    mut call: impl AsyncFnMut(usize) -> Result<()>,
) -> Result<(f64, f64)> {
    for i in 0..warm {
        call(i).await?;
    }
    let mut d = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        call(warm + i).await?;
        d.push(t.elapsed());
    }
    d.sort();
    Ok((pct(&d, 0.50), pct(&d, 0.99)))
}

/// Calls per second from `clients` at once, each calling `echo` in a loop: `warm` seconds not
/// counted, then `secs` counted.
async fn rate(clients: Vec<AgentClient>, warm: f64, secs: f64) -> Result<(f64, Vec<AgentClient>)> {
    let start = Instant::now() + Duration::from_secs_f64(warm);
    let end = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = 0u64;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    calls::echo(&mut c, SERVICE, &format!("client {k} call {i}")).await?;
                    i += 1;
                    if now >= start {
                        n += 1;
                    }
                }
                anyhow::Ok((n, c))
            })
        })
        .collect();
    let mut total = 0;
    let mut back = Vec::new();
    for t in tasks {
        let (n, c) = t.await??;
        total += n;
        back.push(c);
    }
    Ok((total as f64 / secs, back))
}

struct Settings {
    secs: f64,
    warm: f64,
    reps: usize,
    calls: usize,
    warm_calls: usize,
}

impl Settings {
    fn from_env() -> Result<Self> {
        // `cargo bench` passes `--bench`; `cargo test --benches` runs this without it.
        if !std::env::args().any(|a| a == "--bench") {
            return Ok(Self { secs: 0.05, warm: 0.02, reps: 1, calls: 5, warm_calls: 2 });
        }
        let secs = match std::env::var("CLAUDEMESH_BENCH_SECS") {
            Ok(s) => s.parse::<f64>().with_context(|| format!("CLAUDEMESH_BENCH_SECS={s:?}"))?,
            Err(_) => 2.0,
        };
        ensure!(secs > 0.0, "CLAUDEMESH_BENCH_SECS must be positive");
        Ok(Self { secs, warm: (secs / 6.0).min(0.5), reps: REPS, calls: CALLS, warm_calls: WARM_CALLS })
    }
}

/// One row of the table: a measure over the repetitions.
struct Row {
    what: &'static str,
    unit: &'static str,
    samples: Vec<f64>,
}

impl Row {
    fn line(&self) -> String {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (s[0], s[s.len() / 2], s[s.len() - 1]);
        let p = if self.unit == "calls/s" { 0 } else { 2 };
        format!("| {} | {} | {mid:.p$} | {lo:.p$}–{hi:.p$} |", self.what, self.unit)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let st = Settings::from_env()?;
    let fixture = fixture_exe();
    ensure!(
        fixture.exists(),
        "{} is missing: run `cargo build {}-p claudemesh-broker --bins` first",
        fixture.display(),
        if cfg!(debug_assertions) { "" } else { "--release " }
    );
    let setup = Instant::now();
    let w = World::start().await;
    let token = w.broker.as_ref().context("no broker")?.admin_token.clone();
    let bob_agent = AgentProcess::start(&w.member("bob").await).await;
    // The admin's agent starts after the last member is enrolled (those connect as the admin).
    let admin_agent = AgentProcess::start(&w.admin_paths()).await;
    let mut bob = bob_agent.client().await;
    let mut admin = admin_agent.client().await;
    wait_connected(&mut bob).await;
    wait_connected(&mut admin).await;
    calls::deploy(&mut admin, SERVICE, vec![fixture.display().to_string()], &token).await?;
    calls::echo(&mut bob, SERVICE, "first").await?;
    let child = start_child().await?;
    child_echo(&child, "first").await?;
    eprintln!("set up in {:.1} s", setup.elapsed().as_secs_f64());

    let mut child_p = (Vec::new(), Vec::new());
    let mut mesh_p = (Vec::new(), Vec::new());
    let mut added = (Vec::new(), Vec::new());
    let mut ratio = Vec::new();
    for rep in 0..st.reps {
        let (c50, c99) =
            latencies(st.warm_calls, st.calls, async |i| child_echo(&child, &format!("call {i}")).await)
                .await?;
        let (m50, m99) = latencies(st.warm_calls, st.calls, async |i| {
            calls::echo(&mut bob, SERVICE, &format!("call {i}")).await
        })
        .await?;
        eprintln!("  rep {rep}: child {c50:.3}/{c99:.3} ms, mesh {m50:.3}/{m99:.3} ms");
        child_p.0.push(c50);
        child_p.1.push(c99);
        mesh_p.0.push(m50);
        mesh_p.1.push(m99);
        added.0.push(m50 - c50);
        added.1.push(m99 - c99);
        ratio.push(m50 / c50);
    }

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(bob_agent.client().await);
    }
    let mut throughput = Vec::new();
    for _ in 0..st.reps {
        let (r, back) = rate(clients, st.warm, st.secs).await?;
        throughput.push(r);
        clients = back;
    }
    eprintln!("  {CLIENTS} clients: {throughput:.0?} calls/s");

    let rows = [
        Row { what: "child alone, p50", unit: "ms", samples: child_p.0 },
        Row { what: "child alone, p99", unit: "ms", samples: child_p.1 },
        Row { what: "through the mesh, p50", unit: "ms", samples: mesh_p.0 },
        Row { what: "through the mesh, p99", unit: "ms", samples: mesh_p.1 },
        Row { what: "added by the mesh, p50", unit: "ms", samples: added.0 },
        Row { what: "added by the mesh, p99", unit: "ms", samples: added.1 },
        Row { what: "mesh ÷ child, p50", unit: "×", samples: ratio },
        Row { what: "calls to one service, 8 socket clients", unit: "calls/s", samples: throughput },
    ];
    println!();
    println!(
        "{} sequential `echo` calls per latency measure after {} warm-up; {} s of throughput \
         after {:.2} s warm-up; {} repetitions; agents as `claudemesh agent run` processes; {} cores",
        st.calls,
        st.warm_calls,
        st.secs,
        st.warm,
        st.reps,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!();
    println!("| measure | unit | median | min–max |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!("{}", r.line());
    }
    drop(clients);
    child.cancel().await?;
    drop((bob, admin));
    drop((bob_agent, admin_agent));
    Ok(())
}
