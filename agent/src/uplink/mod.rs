//! One broker link per joined mesh: connect (ws/wss), hello (naming this agent process), then
//! hand the connection to [`link`]. Links recover on their own: every lost connection
//! and every refusal retries with jittered exponential backoff (1 s growing to 5 min), except
//! two that no retry can fix — the member was removed (`revoked`), or another agent uses this
//! member's key (`key_in_use`); those wait for a config change or an agent restart. A link to
//! the broker this agent runs itself (`claudemesh up`) retries at once when that broker starts
//! again, however long its backoff had grown.

use std::sync::Arc;
use std::time::Duration;

use claudemesh_protocol::crypto::{random_bytes, sign_hello};
use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ErrorFrame, Hello, ServerFrame};
use claudemesh_protocol::limits::{MIN_BROKER_PROTOCOL, PROTOCOL_VERSION};
use claudemesh_protocol::local::LinkState;
use claudemesh_protocol::trust::SignedStatement;
use tokio::sync::mpsc;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use crate::core::{Input, UplinkEvent};
use crate::mesh::Refusal;
use crate::shared::Agent;

pub(crate) mod link;
pub(crate) mod members;
mod outbox;
mod presence;

use link::{Link, Pending};

pub use crate::mesh::UplinkCmd;

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    Shutdown,
    /// The broker says this member was removed from the mesh: no retry can help.
    Removed(String),
    /// Another agent holds a live connection with this member's key; this one started later.
    KeyInUse(String),
    /// The broker refused the hello for another reason (unknown mesh or member, wrong key,
    /// busy, at a limit): retried with backoff, since the broker may recover (a restored
    /// backup, a fixed deployment).
    Refused(Refusal),
    Lost(String),
}

impl End {
    /// What a broker `error` in answer to hello, or sent unprompted, means for the link.
    pub(crate) fn from_error(e: ErrorFrame) -> End {
        match e.code {
            ErrorCode::Revoked => End::Removed(e.message),
            ErrorCode::KeyInUse => End::KeyInUse(e.message),
            code => End::Refused(Refusal { code, message: e.message }),
        }
    }
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Exponential backoff with jitter: each wait is 50–100 % of a base that doubles from 1 s up
/// to [`MAX_BACKOFF`], so a broker restart does not get every agent back at the same instant.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(1) }
    }
}

impl Backoff {
    /// The next wait; the one after it is about twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let jitter = f64::from(u16::from_le_bytes(random_bytes::<2>())) / f64::from(u16::MAX);
        let wait = self.base.mul_f64(0.5 + jitter / 2.0);
        self.base = (self.base * 2).min(MAX_BACKOFF);
        wait
    }
}

fn removed_detail(slug: &str, broker: &str) -> String {
    format!(
        "the broker says this member was removed from mesh {slug} ({broker}); `claudemesh leave {slug}` \
         clears it from this machine, and a new invite brings you back"
    )
}

fn key_in_use_detail(broker: &str) -> String {
    let broker = if broker.trim().is_empty() {
        "another agent is connected with this member's key (a copied config dir?); give each machine \
         its own identity by joining with its own invite"
    } else {
        broker
    };
    format!(
        "{broker} (this agent stopped connecting to this mesh; it tries again when config.json changes \
         or the agent restarts)"
    )
}

/// Tells the core what link `mesh_id` saw (waiting while the core's queue is full).
pub(crate) async fn report(agent: &Agent, mesh_id: &str, event: UplinkEvent) {
    if agent.core.send(Input::Uplink { mesh: mesh_id.to_string(), event }).await.is_err() {
        tracing::debug!(mesh = mesh_id, "the core is gone; the agent is stopping");
    }
}

/// Reports a link state (with no retry pending and no refusal).
async fn set_link(agent: &Agent, mesh_id: &str, state: LinkState, detail: Option<String>) {
    report(agent, mesh_id, UplinkEvent::Link { state, detail, retry_in: None, refusal: None }).await;
}

/// Runs the link of the mesh `config` describes until `cancel`.
pub async fn run(
    agent: Arc<Agent>,
    config: crate::config::MeshConfig,
    key: Arc<claudemesh_protocol::crypto::MemberKeypair>,
    mut rx: mpsc::Receiver<UplinkCmd>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let (mesh_id, slug) = (config.id.clone(), config.slug.clone());
    // Plaintext to another machine only when the member chose it (a config edited by hand is
    // held to this too): refused for good, no retry can help until the config changes.
    if let Err(e) = crate::transport::check(&config.broker_url, config.insecure_transport()) {
        tracing::warn!(mesh = %slug, code = e.code(), "{e}");
        set_link(&agent, &mesh_id, LinkState::Refused, Some(e.to_string())).await;
        cancel.cancelled().await;
        return;
    }
    let mut local = agent.local_broker.subscribe();
    loop {
        set_link(&agent, &mesh_id, LinkState::Connecting, None).await;
        let mut connected = false;
        let end = serve(&agent, &config, &key, &mut rx, &cancel, &mut connected).await;
        if connected {
            backoff = Backoff::default();
        }
        let (why, refusal) = match end {
            End::Shutdown => return,
            End::Removed(msg) => {
                set_link(&agent, &mesh_id, LinkState::Refused, Some(removed_detail(&slug, &msg))).await;
                cancel.cancelled().await;
                return;
            }
            End::KeyInUse(msg) => {
                set_link(&agent, &mesh_id, LinkState::KeyInUse, Some(key_in_use_detail(&msg))).await;
                cancel.cancelled().await;
                return;
            }
            End::Refused(r) => {
                (format!("the broker refused this member ({}: {})", r.code.as_str(), r.message), Some(r))
            }
            End::Lost(why) => (why, None),
        };
        let wait = backoff.next_wait();
        // When it retries is in `retry_in_secs` (status shows it beside the reason).
        let event = UplinkEvent::Link {
            state: LinkState::Disconnected,
            detail: Some(why),
            retry_in: Some(wait),
            refusal,
        };
        report(&agent, &mesh_id, event).await;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep(wait) => {}
            _ = local_broker_started(&mut local, &config.broker_url) => {
                // Its downtime said nothing about the next one: start over from a short wait.
                backoff = Backoff::default();
            }
        }
    }
}

/// Waits until the broker this agent runs itself starts (again) at `url` (state `running`
/// reported after the last look at `local`); never returns for a mesh on another broker.
async fn local_broker_started(
    local: &mut tokio::sync::watch::Receiver<Option<claudemesh_protocol::local::LocalBrokerStatus>>,
    url: &str,
) {
    loop {
        if local.changed().await.is_err() {
            return std::future::pending().await;
        }
        if local.borrow_and_update().as_ref().is_some_and(|b| b.url == url && b.state == "running") {
            return;
        }
    }
}

/// Connects, says hello, and serves the connection until it ends.
async fn serve(
    agent: &Agent,
    config: &crate::config::MeshConfig,
    key: &claudemesh_protocol::crypto::MemberKeypair,
    rx: &mut mpsc::Receiver<UplinkCmd>,
    cancel: &CancellationToken,
    connected: &mut bool,
) -> End {
    let (url, member_id, mesh_id) = (config.broker_url.clone(), config.member_id.clone(), config.id.as_str());
    let connector = match crate::tls::connector_from_env() {
        Ok(c) => c,
        Err(e) => return End::Lost(e),
    };
    // Nagle off: messages are small and latency matters.
    let connect = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(url.as_str(), Some(ws_config()), true, connector),
    );
    let ws = tokio::select! {
        _ = cancel.cancelled() => return End::Shutdown,
        r = connect => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return End::Lost(format!("cannot reach {url}: {e}")),
            Err(_) => return End::Lost(format!("cannot reach {url}: timed out")),
        },
    };
    let mut link = Link::new(agent, mesh_id, ws);
    // welcome → hello → hello_ack
    let (challenge, mut public_url) = match link.next_frame(Duration::from_secs(15)).await {
        Ok(ServerFrame::Welcome { protocol, .. }) if protocol < MIN_BROKER_PROTOCOL => {
            return End::Refused(Refusal {
                code: ErrorCode::Invalid,
                message: format!(
                    "the broker at {url} speaks claudemesh protocol {protocol}, and this agent needs \
                     {MIN_BROKER_PROTOCOL} or later: upgrade the broker"
                ),
            });
        }
        Ok(ServerFrame::Welcome { challenge, public_url, .. }) => (challenge, public_url),
        Ok(other) => return End::Lost(format!("unexpected first frame {}", other.type_name())),
        Err(e) => return e,
    };
    let signature = sign_hello(key, mesh_id, &member_id, &challenge);
    let hello = ClientFrame::Hello(Hello {
        mesh_id: mesh_id.into(),
        member_id: member_id.clone(),
        pubkey: key.public_hex(),
        signature,
        instance: Some(agent.instance.clone()),
        protocol: PROTOCOL_VERSION,
    });
    if let Err(e) = link.send(&hello).await {
        return e;
    }
    match link.next_frame(Duration::from_secs(15)).await {
        Ok(ServerFrame::HelloAck { role, public_url: ack_url, .. }) => {
            if ack_url.is_some() {
                public_url = ack_url;
            }
            report(agent, mesh_id, UplinkEvent::Hello { role, public_url }).await;
        }
        Ok(ServerFrame::Error(e)) => return End::from_error(e),
        Ok(other) => return End::Lost(format!("unexpected reply to hello: {}", other.type_name())),
        Err(e) => return e,
    }
    // Publish this member's own signed statement: what other agents verify our key by.
    match member_statement(config, key) {
        Ok(statement) => {
            if let Err(e) =
                link.request(|req| ClientFrame::Statement { req, statement }, Pending::Ignore).await
            {
                return e;
            }
        }
        Err(e) => tracing::warn!(mesh = %config.slug, error = %e, "cannot sign this member's statement"),
    }
    *connected = true;
    set_link(agent, mesh_id, LinkState::Connected, None).await;
    if let Err(e) = link.after_hello().await {
        return e;
    }
    link.main_loop(rx, cancel).await
}

/// This member's `member` statement: its id, key and enrolled name, and the invite it joined
/// with (none for the mesh's creator, or a mesh joined before protocol 2). Signed with the
/// time of joining, so it is the same statement on every connect.
fn member_statement(
    config: &crate::config::MeshConfig,
    key: &claudemesh_protocol::crypto::MemberKeypair,
) -> Result<SignedStatement, claudemesh_protocol::trust::StatementError> {
    claudemesh_protocol::trust::member_statement(
        key,
        &config.id,
        &config.member_id,
        &config.display_name,
        config.invite.as_deref(),
        config.joined_at.saturating_mul(1000),
    )
}

/// The link's WebSocket limits: the protocol's ([`MAX_WS_MESSAGE_BYTES`], twice the frame
/// cap, as the broker sets), not tungstenite's 64 MiB default, so a broker cannot make the
/// agent buffer more than that for one message.
pub(crate) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    use claudemesh_protocol::limits::MAX_WS_MESSAGE_BYTES;
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WS_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: ErrorCode) -> ErrorFrame {
        ErrorFrame { req: None, code, message: "m".into(), retry_after_ms: None }
    }

    #[test]
    fn only_a_removal_and_a_key_in_use_stop_the_link() {
        assert_eq!(End::from_error(err(ErrorCode::Revoked)), End::Removed("m".into()));
        assert_eq!(End::from_error(err(ErrorCode::KeyInUse)), End::KeyInUse("m".into()));
        for code in [
            ErrorCode::NotFound,
            ErrorCode::Unauthorized,
            ErrorCode::BadSignature,
            ErrorCode::Unavailable,
            ErrorCode::Limit,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                End::from_error(err(code)),
                End::Refused(Refusal { code, message: "m".into() }),
                "{code:?} is retried"
            );
        }
    }

    fn broker(url: &str, state: &str) -> Option<claudemesh_protocol::local::LocalBrokerStatus> {
        Some(claudemesh_protocol::local::LocalBrokerStatus {
            state: state.into(),
            listen: String::new(),
            url: url.into(),
            public_url: None,
            pid: None,
            restarts: 0,
            last_exit: None,
            log: Default::default(),
        })
    }

    /// A link waiting out its backoff wakes when its own local broker runs again, not for
    /// another broker's news nor for a broker that is only restarting.
    #[tokio::test]
    async fn a_link_wakes_when_its_local_broker_starts_again() {
        let url = "ws://127.0.0.1:7900/ws";
        let (tx, mut rx) = tokio::sync::watch::channel(broker(url, "running"));
        rx.borrow_and_update();
        let wait = local_broker_started(&mut rx, url);
        tokio::pin!(wait);
        let wakes = |f: std::pin::Pin<&mut _>| futures_util::FutureExt::now_or_never(f).is_some();
        tx.send_replace(broker(url, "restarting"));
        tx.send_replace(broker("ws://127.0.0.1:7901/ws", "running"));
        tokio::task::yield_now().await;
        assert!(!wakes(wait.as_mut()), "not for restarting, nor for another broker");
        tx.send_replace(broker(url, "running"));
        assert!(wakes(wait.as_mut()), "its own broker runs again");
        // With no local broker at all, it never wakes.
        let (tx, mut rx) = tokio::sync::watch::channel(None);
        rx.borrow_and_update();
        drop(tx);
        let never = local_broker_started(&mut rx, url);
        assert!(tokio::time::timeout(Duration::from_millis(100), never).await.is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        let mut b = Backoff::default();
        let mut base = Duration::from_secs(1);
        for _ in 0..20 {
            let w = b.next_wait();
            assert!(w >= base / 2 && w <= base, "{w:?} within 50-100% of {base:?}");
            base = (base * 2).min(MAX_BACKOFF);
        }
        assert!(b.next_wait() >= MAX_BACKOFF / 2, "the cap is reached and kept");
    }

    #[test]
    fn only_the_removed_detail_suggests_leaving() {
        assert!(removed_detail("team", "x").contains("claudemesh leave team"));
        assert!(!key_in_use_detail("").contains("leave"));
        assert!(key_in_use_detail("use your own invite").starts_with("use your own invite"));
    }
}
