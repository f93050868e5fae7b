//! A stream of direct messages from one agent's session to another's that survives the faults
//! a test injects meanwhile: senders retry every send under an idempotency key until the agent
//! accepts it (so a send whose reply a crash lost is not sent twice), and one reader takes and
//! confirms the receiving session's messages, reconnecting and re-registering after the agent
//! restarts. What was acknowledged and what was shown are compared at the end. Included by
//! `#[path = "common/stream.rs"] mod stream;` next to `mod common;` and `mod faults;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claudemesh_agent::{AgentClient, Paths};
use claudemesh_protocol::frames::{GroupRole, Priority, SessionInfo};
use claudemesh_protocol::local::{
    AgentCall, ConfirmReply, InboxParams, InboxReply, SendParams, SendReply, SessionRegister,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::faults::lost_and_doubled;

/// One end of the stream: an agent's config dir and the session on it.
#[derive(Debug, Clone)]
pub struct End {
    pub paths: Paths,
    pub session_id: String,
    pub name: String,
}

/// Every call is bounded: a call the agent never answers counts as failed and is retried.
const CALL: Duration = Duration::from_secs(10);

/// What the stream's tasks share.
#[derive(Debug, Default)]
struct Shared {
    /// Sends the sending agent accepted (each body once: retries reuse the idempotency key).
    acked: AtomicUsize,
    /// Bodies whose take was confirmed, in the order shown (duplicates kept).
    shown: Mutex<Vec<String>>,
    /// The last refusal or failure any task saw, for a timeout's message.
    last_error: Mutex<String>,
}

impl Shared {
    fn failed(&self, what: String) {
        *self.last_error.lock().unwrap() = what;
    }
}

/// A running stream; see the module docs.
#[derive(Debug)]
pub struct Stream {
    shared: Arc<Shared>,
    senders: Vec<JoinHandle<Vec<String>>>,
    reader: JoinHandle<()>,
    pause: watch::Sender<bool>,
    paused: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    sent: Vec<String>,
    from: End,
    to: End,
}

/// What the stream ended with.
#[derive(Debug)]
pub struct Outcome {
    /// Acknowledged sends that the receiving session was never shown.
    pub lost: Vec<String>,
    /// Bodies shown more than once.
    pub doubled: Vec<String>,
    /// Shown bodies that were never sent.
    pub strange: Vec<String>,
    pub acked: usize,
    pub shown: usize,
}

/// A client of `paths` with `session` registered on it, retried until the agent answers.
async fn session_client(paths: &Paths, session: &End, shared: &Shared) -> AgentClient {
    loop {
        let attempt = async {
            let mut c = AgentClient::connect(paths, "fault-stream").await.map_err(|e| e.to_string())?;
            let reg = AgentCall::SessionRegister(SessionRegister {
                meshes: vec![],
                session: SessionInfo {
                    session_id: session.session_id.clone(),
                    display_name: session.name.clone(),
                    groups: Vec::<GroupRole>::new(),
                    ..Default::default()
                },
                claude_pid: None,
                default_name: false,
            });
            c.call(reg).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(c)
        };
        match tokio::time::timeout(CALL, attempt).await {
            Ok(Ok(c)) => return c,
            Ok(Err(e)) => shared.failed(format!("connect/register {}: {e}", session.name)),
            Err(_) => shared.failed(format!("connect/register {}: no answer", session.name)),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Stream {
    /// Starts `conns` senders splitting `bodies`, from `from` to `to`'s session (addressed as
    /// `session:<id>`), and the reader on `to`.
    pub fn start(from: End, to: End, bodies: Vec<String>, conns: usize) -> Self {
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(false);
        let senders = bodies
            .chunks(bodies.len().div_ceil(conns).max(1))
            .map(|chunk| {
                let (from, target, chunk, shared) =
                    (from.clone(), format!("session:{}", to.session_id), chunk.to_vec(), shared.clone());
                tokio::spawn(send_loop(from, target, chunk, shared))
            })
            .collect();
        let (pause, pause_rx) = watch::channel(false);
        let (paused_tx, paused) = watch::channel(false);
        let reader = tokio::spawn(read_loop(to.clone(), shared.clone(), pause_rx, paused_tx, stop_rx));
        Self { shared, senders, reader, pause, paused, stop, sent: bodies, from, to }
    }

    /// Sends accepted so far.
    pub fn acked(&self) -> usize {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Bodies shown so far (duplicates counted).
    pub fn shown(&self) -> usize {
        self.shared.shown.lock().unwrap().len()
    }

    /// Waits until at least `n` sends were accepted (60 s at most).
    pub async fn wait_acked(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < n {
            assert!(
                Instant::now() < deadline,
                "only {} sends accepted, waiting for {n}; last error: {}",
                self.acked(),
                self.shared.last_error.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the reader between two calls (none in flight) and waits until it has.
    pub async fn pause_reader(&mut self) {
        self.pause.send_replace(true);
        let _ = tokio::time::timeout(CALL * 2, self.paused.wait_for(|p| *p)).await.unwrap();
    }

    /// Lets the reader go on (it reconnects and re-registers if its agent changed).
    pub fn resume_reader(&self) {
        self.pause.send_replace(false);
    }

    /// Waits for every sender, then until every accepted body was shown (or `within` passed),
    /// stops the reader, and judges what was shown against what was accepted.
    pub async fn finish(mut self, within: Duration) -> Outcome {
        let mut acked = Vec::new();
        for s in std::mem::take(&mut self.senders) {
            acked.extend(s.await.unwrap());
        }
        let deadline = Instant::now() + within;
        loop {
            let (lost, _) = lost_and_doubled(&acked, &self.shared.shown.lock().unwrap());
            if lost.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Anything shown after all arrived is a double: give a straggler a moment to show up.
        let settle = self.shown();
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.send_replace(true);
        (&mut self.reader).await.unwrap();
        let shown = self.shared.shown.lock().unwrap().clone();
        if shown.len() > settle {
            eprintln!("{} more shown after every accepted send was", shown.len() - settle);
        }
        let (lost, doubled) = lost_and_doubled(&acked, &shown);
        if !lost.is_empty() {
            explain_lost(&self.from, &self.to, &lost).await;
        }
        let sent: std::collections::BTreeSet<&String> = self.sent.iter().collect();
        let strange = shown.iter().filter(|b| !sent.contains(b)).cloned().collect();
        Outcome { lost, doubled, strange, acked: acked.len(), shown: shown.len() }
    }
}

/// Sends each body until the agent accepts it, under the body as idempotency key; returns the
/// bodies accepted (all of them).
async fn send_loop(from: End, target: String, chunk: Vec<String>, shared: Arc<Shared>) -> Vec<String> {
    let mut c = session_client(&from.paths, &from, &shared).await;
    let mut acked = Vec::with_capacity(chunk.len());
    for body in chunk {
        loop {
            let call = AgentCall::Send(SendParams {
                to: target.clone(),
                message: body.clone(),
                priority: Priority::Next,
                mesh: None,
                from_session: Some(from.session_id.clone()),
                reply_to: None,
                idempotency_key: Some(body.clone()),
            });
            match tokio::time::timeout(CALL, c.request::<SendReply>(call)).await {
                Ok(Ok(_)) => break,
                Ok(Err(claudemesh_agent::ClientError::Api(e))) => {
                    // Refused (the recipient's session is away while its agent restarts, the
                    // link is down): the same send again shortly.
                    shared.failed(format!("send {body}: {}: {}", e.code.as_str(), e.message));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Err(e)) => {
                    shared.failed(format!("send {body}: {e}"));
                    c = session_client(&from.paths, &from, &shared).await;
                }
                Err(_) => {
                    shared.failed(format!("send {body}: no answer in {CALL:?}"));
                    c = session_client(&from.paths, &from, &shared).await;
                }
            }
        }
        shared.acked.fetch_add(1, Ordering::Relaxed);
        acked.push(body);
    }
    acked
}

/// Takes and confirms `to`'s messages until stopped; pauses when asked.
async fn read_loop(
    to: End,
    shared: Arc<Shared>,
    mut pause: watch::Receiver<bool>,
    paused: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut c: Option<AgentClient> = None;
    loop {
        if *pause.borrow_and_update() {
            c = None;
            paused.send_replace(true);
            let _ = pause.wait_for(|p| !*p).await;
            paused.send_replace(false);
        }
        if *stop.borrow() {
            return;
        }
        let client = match &mut c {
            Some(c) => c,
            None => c.insert(session_client(&to.paths, &to, &shared).await),
        };
        let call = AgentCall::Inbox(InboxParams {
            session: Some(to.session_id.clone()),
            take: true,
            limit: Some(500),
            ..Default::default()
        });
        let r = match tokio::time::timeout(CALL, client.request::<InboxReply>(call)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                shared.failed(format!("take: {e}"));
                c = None;
                continue;
            }
            Err(_) => {
                shared.failed("take: no answer".into());
                c = None;
                continue;
            }
        };
        let Some(lease) = r.lease else {
            assert!(r.messages.is_empty(), "a take of {} messages has no lease", r.messages.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let call = AgentCall::Confirm { lease, msg_ids: None };
        match tokio::time::timeout(CALL, client.request::<ConfirmReply>(call)).await {
            Ok(Ok(done)) => {
                assert!(!done.expired, "a lease ran out before its confirm: {done:?}");
                shared.shown.lock().unwrap().extend(r.messages.into_iter().map(|m| m.body));
            }
            // The agent is paused only between calls, so a confirm fails only if the test broke
            // the connection some other way: nothing is counted, the messages come back.
            other => {
                shared.failed(format!("confirm: {other:?}"));
                c = None;
            }
        }
    }
}

/// Prints where each of the first few lost bodies is: the sender's record of it (pending in the
/// outbox, accepted as which msg_id, failed), the broker's per-recipient state, and whether the
/// receiving agent has it in its inbox (seen or not). For a failure's message: a loss is then
/// placed at the sender, the broker or the receiver.
async fn explain_lost(from: &End, to: &End, lost: &[String]) {
    let look = lost.iter().take(5).collect::<Vec<_>>();
    let sent = match AgentClient::connect(&from.paths, "fault-explain").await {
        Ok(mut c) => {
            let call =
                AgentCall::Sent { mesh: None, limit: Some(claudemesh_protocol::limits::SENT_MAX_LIMIT) };
            match c.request::<claudemesh_protocol::local::SentReply>(call).await {
                Ok(r) => r.sent,
                Err(e) => {
                    eprintln!("lost: cannot list the sender's sends: {e}");
                    vec![]
                }
            }
        }
        Err(e) => {
            eprintln!("lost: cannot reach the sender's agent: {e}");
            vec![]
        }
    };
    let mut inbox = Vec::new();
    if let Ok(mut c) = AgentClient::connect(&to.paths, "fault-explain").await {
        let mut after = Some(String::new());
        while let Some(cursor) = after.take() {
            let call = AgentCall::Inbox(InboxParams { all: true, after: Some(cursor), ..Default::default() });
            match c.request::<InboxReply>(call).await {
                Ok(r) => {
                    inbox.extend(r.messages);
                    after = r.next;
                }
                Err(e) => eprintln!("lost: cannot page the receiver's inbox: {e}"),
            }
        }
    }
    for body in look {
        let rec = sent.iter().find(|r| &r.body == body);
        let msg = inbox.iter().find(|m| &m.body == body);
        eprintln!(
            "lost {body}: sender's record {:?}; receiver's inbox {:?}",
            rec.map(|r| (&r.client_msg_id, &r.state)),
            msg.map(|m| (&m.msg_id, m.seen, &m.error, m.received_at))
        );
        if let Some(r) = rec
            && matches!(r.state, claudemesh_protocol::local::SendState::Accepted { .. })
            && let Ok(mut c) = AgentClient::connect(&from.paths, "fault-explain").await
        {
            let call = AgentCall::MessageStatus { msg_id: r.client_msg_id.clone() };
            let st = c.request::<claudemesh_protocol::local::MessageStatusReply>(call).await;
            eprintln!("lost {body}: broker says {:?}", st.map(|s| (s.recipient_states, s.broker_error)));
        }
    }
}
