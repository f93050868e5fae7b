//! The socket API (DESIGN §10): dispatch of each `request` to who serves it. Reads (`status`,
//! `meshes`, `peers`, `members`) are answered from the core's snapshot; delivery calls (`send`,
//! `inbox`, `confirm`, `mark_seen`, `mark_read`, `session_*`, `hook`) go to the core; calls that
//! wait on a broker (invites, membership, `leave`, `message_status`) or on time (`hook_wait`), and
//! reads of the store (`inbox` without `take`, `sent`), run here, so they never hold up the core.
//! Errors carry the broker's stable codes and say what to do.

use std::time::Duration;

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, ServerFrame};
use claudemesh_protocol::local::{
    AgentCall, MessageStatusReply, SendState, ShutdownReply, WaitOutcome, WaitReply,
};
use serde_json::Value;

use crate::core::Input;
use crate::core::calls::to_value;
use crate::shared::Agent;

pub mod admin;
pub mod bundle;
pub mod inbox;
pub mod members;
pub mod sent;
pub mod services;
pub mod skills;
pub mod vault;

pub use crate::error::ApiError;
pub(crate) use crate::error::internal;

/// The longest a `hook_wait` may last (the `Stop` hook is installed with a one-day timeout).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Handles one request of socket connection `conn`.
pub async fn handle(agent: &Agent, conn: u64, call: AgentCall) -> Result<Value, ApiError> {
    match call {
        AgentCall::Status => {
            let outbox = agent.store.outbox_count().unwrap_or_default();
            let local_broker = agent.local_broker.borrow().clone();
            to_value(&agent.view().status(&outbox, local_broker))
        }
        AgentCall::Meshes => to_value(&agent.view().mesh_list()),
        AgentCall::Peers { mesh } => {
            members::refresh_presence(agent, mesh.as_deref()).await;
            to_value(&agent.view().peers(mesh.as_deref())?)
        }
        AgentCall::Members { mesh } => {
            members::refresh_directories(agent, mesh.as_deref()).await;
            to_value(&agent.view().members(mesh.as_deref())?)
        }
        AgentCall::Send(p) => match agent.core.call(conn, AgentCall::Send(p.clone())).await {
            // The name may belong to someone who joined (or rejoined) a moment ago, before the
            // broker's batched presence said so: ask the broker, then try once more.
            Err((ErrorCode::NotFound, _)) => {
                members::refresh_directories(agent, p.mesh.as_deref()).await;
                agent.core.call(conn, AgentCall::Send(p)).await
            }
            r => r,
        },
        AgentCall::Inbox(p) if !p.take => inbox::read(agent, p).await,
        AgentCall::Inbox(p) if p.all || p.msg_id.is_some() => inbox::take_with_history(agent, conn, p).await,
        call @ (AgentCall::Inbox(_)
        | AgentCall::Confirm { .. }
        | AgentCall::MarkSeen { .. }
        | AgentCall::MarkRead { .. }
        | AgentCall::SessionRegister(_)
        | AgentCall::SessionUpdate { .. }
        | AgentCall::SessionClose { .. }
        | AgentCall::Hook(_)) => agent.core.call(conn, call).await,
        AgentCall::MessageStatus { msg_id } => message_status(agent, &msg_id).await,
        AgentCall::Sent { mesh, limit } => sent::list(agent, mesh.as_deref(), limit).await,
        AgentCall::InviteCreate(p) => admin::invite_create(agent, p).await,
        AgentCall::InviteList { mesh } => admin::invite_list(agent, mesh.as_deref()).await,
        AgentCall::InviteRevoke { invite_id, mesh } => {
            admin::invite_revoke(agent, mesh.as_deref(), invite_id).await
        }
        AgentCall::MemberRemove { member, mesh } => members::remove(agent, mesh.as_deref(), &member).await,
        AgentCall::MemberSet { member, mesh, role, groups } => {
            members::set(agent, mesh.as_deref(), &member, role, groups).await
        }
        AgentCall::MemberRepin { member, mesh } => members::repin(agent, mesh.as_deref(), &member).await,
        AgentCall::Leave { mesh, local_only } => members::leave(agent, &mesh, local_only).await,
        AgentCall::HookWait { session_id, timeout_ms } => hook_wait(agent, session_id, timeout_ms).await,
        AgentCall::Shutdown => {
            agent.shutdown.cancel();
            to_value(&ShutdownReply { stopping: true })
        }
        call @ (AgentCall::ServiceDeploy(_)
        | AgentCall::ServiceUndeploy { .. }
        | AgentCall::ServiceUpdate(_)
        | AgentCall::ServiceCatalog { .. }
        | AgentCall::ServiceSchema { .. }
        | AgentCall::ServiceLogs { .. }
        | AgentCall::ServiceScope { .. }
        | AgentCall::ServiceCall(_)
        | AgentCall::ServiceHost(_)
        | AgentCall::ServiceUnhost { .. }) => services::handle(agent, call).await,
        call @ (AgentCall::VaultSet(_) | AgentCall::VaultList { .. } | AgentCall::VaultDelete { .. }) => {
            vault::handle(agent, call).await
        }
        call @ (AgentCall::SkillShare(_)
        | AgentCall::SkillList { .. }
        | AgentCall::SkillGet { .. }
        | AgentCall::SkillRemove { .. }) => skills::handle(agent, call).await,
    }
}

/// `hook_wait`: returns `ready` as soon as the session has a message due (taking nothing, so a
/// hook killed while waiting loses nothing), or why it stopped waiting. A client that goes away
/// drops this future, which tells the core the wait ended.
async fn hook_wait(agent: &Agent, session: String, timeout_ms: u64) -> Result<Value, ApiError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    agent.core.send(Input::Wait { session: session.clone(), reply }).await?;
    let (generation, outcome) = rx.await.map_err(|_| crate::core::stopping())??;
    let ended = WaitEnd { agent, session: session.clone(), generation };
    let limit = Duration::from_millis(timeout_ms).min(MAX_WAIT);
    let outcome = tokio::select! {
        r = outcome => r.unwrap_or(WaitOutcome::Closed),
        () = tokio::time::sleep(limit) => WaitOutcome::Timeout,
        () = agent.shutdown.cancelled() => WaitOutcome::Closed,
    };
    drop(ended);
    to_value(&WaitReply { session_id: session, outcome })
}

/// Tells the core a wait ended, however it ended (including the future being dropped).
struct WaitEnd<'a> {
    agent: &'a Agent,
    session: String,
    generation: u64,
}

impl Drop for WaitEnd<'_> {
    fn drop(&mut self) {
        let input =
            Input::WaitEnded { session: std::mem::take(&mut self.session), generation: self.generation };
        if let Err((_, e)) = self.agent.core.try_send(input) {
            tracing::debug!(error = %e, "could not tell the core a hook_wait ended");
        }
    }
}

async fn message_status(agent: &Agent, id: &str) -> Result<Value, ApiError> {
    let sent = agent
        .store
        .sent(id)
        .map_err(internal)?
        .ok_or_else(|| (ErrorCode::NotFound, format!("no message {id} sent from this machine")))?;
    let mut out = MessageStatusReply { sent: sent.clone(), recipient_states: None, broker_error: None };
    if let SendState::Accepted { msg_id, .. } = &sent.state {
        let msg_id = msg_id.clone();
        match admin::request_raw(
            agent,
            &sent.mesh_id,
            Box::new(move |req| ClientFrame::MessageStatus { req, msg_id }),
        )
        .await
        {
            Ok(ServerFrame::MessageStatus { recipients, .. }) => out.recipient_states = Some(recipients),
            Ok(ServerFrame::Error(e)) => out.broker_error = Some(e.message),
            Ok(other) => out.broker_error = Some(format!("unexpected reply {}", other.type_name())),
            Err((_, m)) => out.broker_error = Some(m),
        }
    }
    to_value(&out)
}
