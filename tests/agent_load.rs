//! The agent under load and hostile local clients (issue 16 point 3), with real agent processes
//! and a real broker: 10,000 messages delivered to one session and read, then pruned with a
//! short TTL (the inbox's entries and file size before and after); `status` and
//! `session_register` times as the inbox grows; `inbox --all` paged without duplicates or gaps;
//! a client sending a 64 MiB line and clients that never read their replies or events, while
//! the agent's RSS stays bounded and other clients keep getting answers; the idle agent's RSS.
//! Figures go to stderr (`--nocapture`); the assertions are bounds, not timings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, Config, Paths};
use claudemesh_protocol::frames::SessionInfo;
use claudemesh_protocol::limits::AGENT_PROTOCOL_VERSION;
use claudemesh_protocol::local::{
    AgentCall, ClientLine, InboxMessage, InboxParams, InboxReply, SessionRegister, Topic,
};
use common::*;
use faults::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const BOB: &str = "000000b0-10ad-4000-8000-000000000000";
const ALICE: &str = "000000a0-10ad-4000-8000-000000000000";
const N: usize = 10_000;

/// VmRSS of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn file_mib(paths: &Paths) -> f64 {
    std::fs::metadata(paths.db()).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

/// Median milliseconds of `runs` calls made by `call(i)`.
async fn median_ms(c: &mut AgentClient, runs: usize, call: impl Fn(usize) -> AgentCall) -> f64 {
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        bounded("timed call", c.call(call(i))).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    ms[runs / 2]
}

fn register_call(i: usize) -> AgentCall {
    AgentCall::SessionRegister(SessionRegister {
        meshes: vec![],
        session: SessionInfo {
            session_id: format!("000000c0-10ad-4000-8000-{i:012}"),
            display_name: format!("probe-{i}"),
            ..Default::default()
        },
        claude_pid: None,
        default_name: false,
    })
}

/// `status` and `session_register` medians (ms) on bob's agent now.
async fn hot_paths(c: &mut AgentClient, round: usize) -> (f64, f64) {
    let status = median_ms(c, 30, |_| AgentCall::Status).await;
    let register = median_ms(c, 30, |i| register_call(round * 100 + i)).await;
    (status, register)
}

/// Every message `all` selects, paged forward `page` at a time over the socket.
async fn page_through(c: &mut AgentClient, page: u32) -> Vec<InboxMessage> {
    let mut after = String::new();
    let mut out = Vec::new();
    loop {
        let p =
            InboxParams { all: true, limit: Some(page), after: Some(after.clone()), ..Default::default() };
        let r: InboxReply = bounded("inbox page", c.request(AgentCall::Inbox(p))).await.unwrap();
        assert!(r.messages.len() <= page as usize);
        out.extend(r.messages);
        match r.next {
            Some(n) => after = n,
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_read_then_pruned_leave_a_bounded_inbox() {
    within(600, async {
        let w = World::start().await;
        let (alice_paths, _alice, mut a, bob_paths, bob, mut b) = two_agents(&w).await;
        register(&mut b, BOB, "bob-desk", &[]).await;
        register(&mut a, ALICE, "alice-desk", &[]).await;
        wait_peer(&mut a, "bob-desk").await;
        let (s0, r0) = hot_paths(&mut b, 0).await;
        eprintln!("empty inbox: status {s0:.2} ms, session_register {r0:.2} ms");

        let bodies = numbered("load", N);
        let started = Instant::now();
        send_all(&alice_paths, "bob-desk", ALICE, &bodies, 4).await;
        wait_unseen(&mut b, BOB, N, Duration::from_secs(300)).await;
        eprintln!("{N} messages unseen in bob's inbox after {:.1} s", started.elapsed().as_secs_f64());
        let (s1, r1) = hot_paths(&mut b, 1).await;
        eprintln!("{N} unseen: status {s1:.2} ms, session_register {r1:.2} ms");

        // `inbox --all`, paged: every message once, in order of arrival, no gaps.
        let paged = page_through(&mut b, 333).await;
        let got: Vec<String> = paged.iter().map(|m| m.body.clone()).collect();
        let (lost, doubled) = lost_and_doubled(&bodies, &got);
        assert!(lost.is_empty() && doubled.is_empty(), "lost {lost:?}, doubled {doubled:?}");
        assert!(paged.windows(2).all(|p| p[0].received_at <= p[1].received_at), "oldest first");
        let (code, out, err) = cli(&bob_paths, &["inbox", "--all", "--json"]);
        assert_eq!(code, 0, "{err}");
        let listed: Vec<InboxMessage> = serde_json::from_str(&out).unwrap();
        let ids: BTreeSet<&str> = listed.iter().map(|m| m.msg_id.as_str()).collect();
        assert_eq!((listed.len(), ids.len()), (N, N), "the CLI pages through all of them once");

        // Read: every message taken and confirmed.
        let started = Instant::now();
        let read = drain(&mut b, BOB).await;
        assert_eq!(read.len(), N);
        eprintln!("{N} taken and confirmed in {:.1} s", started.elapsed().as_secs_f64());
        let (s2, r2) = hot_paths(&mut b, 2).await;
        eprintln!("{N} seen: status {s2:.2} ms, session_register {r2:.2} ms");
        let m = mesh_status(&mut b).await;
        let before = file_mib(&bob_paths);
        eprintln!("before pruning: {} inbox entries, store file {before:.1} MiB", m.inbox);
        assert_eq!((m.inbox, m.unread), (N, 0));
        for (what, ms) in [("status", s1.max(s2)), ("session_register", r1.max(r2))] {
            assert!(ms < 500.0, "{what} took {ms:.1} ms with {N} messages: a scan of the inbox?");
        }

        // A short TTL, taken from config.json while the agent runs: every seen message goes.
        let mut config = Config::load(&bob_paths).unwrap();
        config.inbox_ttl_secs = Some(1);
        config.inbox_prune_secs = Some(1);
        config.save(&bob_paths).unwrap();
        let started = Instant::now();
        let m = wait_mesh_status(&mut b, "an empty inbox", |m| m.inbox == 0).await;
        eprintln!("pruned to {} entries in {:.1} s", m.inbox, started.elapsed().as_secs_f64());
        let (s3, r3) = hot_paths(&mut b, 3).await;
        eprintln!("after pruning: status {s3:.2} ms, session_register {r3:.2} ms");
        let pruned = file_mib(&bob_paths);
        eprintln!("after pruning: store file {pruned:.1} MiB (pages free for reuse)");
        assert!(read_inbox(&mut b, None).await.messages.is_empty());
        assert!(page_through(&mut b, 1000).await.is_empty(), "nothing is left to page through");

        // A restart compacts the file; the pruned messages stay gone and nothing comes back.
        drop(b);
        drop(bob);
        let bob = AgentProcess::start(&bob_paths).await;
        let mut b = bob.client().await;
        wait_connected(&mut b).await;
        let after = file_mib(&bob_paths);
        let m = mesh_status(&mut b).await;
        eprintln!("after restart: {} inbox entries, store file {after:.1} MiB (was {before:.1})", m.inbox);
        assert_eq!(m.inbox, 0);
        assert!(after < before / 2.0 && after < 16.0, "store file {after:.1} MiB after pruning {N} messages");
        eprintln!("idle agent with {N} pruned: VmRSS {:.1} MiB", rss_mib(bob.child.id()));
    })
    .await;
}

/// Writes the hello (and reads its answer) on a raw connection.
async fn raw(
    paths: &Paths,
) -> (BufReader<tokio::net::unix::OwnedReadHalf>, tokio::net::unix::OwnedWriteHalf) {
    let s = UnixStream::connect(paths.socket()).await.unwrap();
    let (r, mut w) = s.into_split();
    let hello = ClientLine::Hello { protocol: AGENT_PROTOCOL_VERSION, client: "hostile".into() };
    w.write_all(format!("{}\n", serde_json::to_string(&hello).unwrap()).as_bytes()).await.unwrap();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains("hello"), "{line}");
    (r, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_lines_and_clients_that_never_read_cost_bounded_memory() {
    within(300, async {
        let w = World::start().await;
        let paths = w.member("alice").await;
        let agent = AgentProcess::start(&paths).await;
        let pid = agent.child.id();
        let mut c = agent.client().await;
        wait_connected(&mut c).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_mib(pid);
        eprintln!("idle agent, one mesh connected: VmRSS {idle:.1} MiB");
        let peak = std::sync::Arc::new(std::sync::Mutex::new(idle));
        let sampling = tokio_util::sync::CancellationToken::new();
        let sampler = {
            let (peak, stop) = (peak.clone(), sampling.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let now = rss_mib(pid);
                    {
                        let mut p = peak.lock().unwrap();
                        *p = p.max(now);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        // 1. A 64 MiB line without a newline, then the newline and a request: the line is
        //    dropped as it streams with a `too_large` reply, and the connection keeps serving.
        let (mut r1, mut w1) = raw(&paths).await;
        let chunk = vec![b'x'; 1024 * 1024];
        let started = Instant::now();
        for _ in 0..64 {
            w1.write_all(&chunk).await.unwrap();
            // Meanwhile another client is answered.
            bounded("status beside a huge line", c.call(AgentCall::Status)).await.unwrap();
        }
        let req = ClientLine::Request { id: 7, call: AgentCall::Meshes };
        w1.write_all(format!("\n{}\n", serde_json::to_string(&req).unwrap()).as_bytes()).await.unwrap();
        let mut line = String::new();
        bounded("too_large reply", r1.read_line(&mut line)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"]["code"], "too_large", "{line}");
        line.clear();
        bounded("the next request's reply", r1.read_line(&mut line)).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!((v["id"].as_u64(), v["ok"].as_bool()), (Some(7), Some(true)), "{line}");
        eprintln!(
            "64 MiB line dropped in {:.1} s; peak VmRSS so far {:.1} MiB",
            started.elapsed().as_secs_f64(),
            *peak.lock().unwrap()
        );

        // 2. A client that asks and asks and never reads its replies: cut off past the bound.
        let (mut r2, mut w2) = raw(&paths).await;
        let req = serde_json::to_string(&ClientLine::Request { id: 1, call: AgentCall::Status }).unwrap();
        let burst = format!("{req}\n").repeat(1000);
        let started = Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < Duration::from_secs(60) {
            match tokio::time::timeout(Duration::from_secs(2), w2.write_all(burst.as_bytes())).await {
                Ok(Ok(())) => sent += 1000,
                // The agent stopped reading (it is cutting the client off) or closed it.
                _ => break,
            }
            bounded("status beside a client that never reads", c.call(AgentCall::Status)).await.unwrap();
        }
        // Past the agent's send timeout it counts as not reading and is disconnected: what the
        // socket holds then drains to an end of stream.
        tokio::time::sleep(claudemesh_agent::socket_bounds::SEND_TIMEOUT + Duration::from_secs(3)).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                sink.clear();
                match r2.read_until(b'\n', &mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a client that never read {sent} replies was not disconnected");
        eprintln!("non-reader cut off after {sent} requests; peak VmRSS {:.1} MiB", *peak.lock().unwrap());

        // 3. A subscriber that never reads, while sessions come and go and publish events.
        let (mut r3, mut w3) = raw(&paths).await;
        let sub = ClientLine::Subscribe {
            id: 1,
            topics: vec![Topic::Sessions, Topic::Presence, Topic::Links, Topic::Messages],
            session: None,
            mesh: None,
            service: None,
        };
        w3.write_all(format!("{}\n", serde_json::to_string(&sub).unwrap()).as_bytes()).await.unwrap();
        let mut churn = agent.client().await;
        for i in 0..3_000 {
            let sid = format!("000000d0-10ad-4000-8000-{i:012}");
            let mut call = register_call(i);
            if let AgentCall::SessionRegister(r) = &mut call {
                r.session.session_id.clone_from(&sid);
                r.session.summary = Some("x".repeat(400));
            }
            bounded("register", churn.call(call)).await.unwrap();
            bounded("close", churn.call(AgentCall::SessionClose { session_id: sid })).await.unwrap();
            if i % 500 == 499 {
                bounded("status beside a subscriber that never reads", c.call(AgentCall::Status))
                    .await
                    .unwrap();
            }
        }
        // Cut off: what the socket holds drains to an end of stream.
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            let mut sink = Vec::new();
            loop {
                sink.clear();
                match r3.read_until(b'\n', &mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(drained.is_ok(), "a subscriber that never read was not disconnected");
        sampling.cancel();
        sampler.await.unwrap();
        let peak = *peak.lock().unwrap();
        eprintln!("subscriber cut off; peak VmRSS over the whole test {peak:.1} MiB (idle {idle:.1})");
        assert!(peak < 100.0, "agent VmRSS reached {peak:.1} MiB");
        bounded("status at the end", c.call(AgentCall::Status)).await.unwrap();
        drop(w1);
        drop(w2);
        drop(w3);
    })
    .await;
}
