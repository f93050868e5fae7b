//! [`UplinkCmd`]: the work the rest of the agent gives a mesh's broker link (the sender sits in
//! the [`super::MeshView`]; the link task serves it).

use claudemesh_protocol::frames::{ClientFrame, ServerFrame, SessionInfo, SessionPatch};
use tokio::sync::oneshot;

/// Work for a mesh's link from the rest of the agent.
pub enum UplinkCmd {
    /// A request; the frame is built with the link's next `req`, the reply comes back.
    Request {
        build: Box<dyn FnOnce(u64) -> ClientFrame + std::marker::Send>,
        reply: oneshot::Sender<ServerFrame>,
    },
    /// A send was committed to the outbox: the link queues it (no re-read of the outbox).
    Queued(Box<crate::store::OutboxRecord>),
    SessionOpen(SessionInfo),
    SessionUpdate(String, SessionPatch),
    SessionClose(String),
    Receipt(Vec<String>),
    /// A frame that has no reply (`upload_chunk`, `mcp_call_response`), written as it is.
    Frame(Box<ClientFrame>),
    /// Follow a service's log (`mcp_logs{follow}`): a local subscriber wants its lines.
    Follow(String),
    /// The last local follower of a service's log went away (`mcp_logs_unfollow`).
    Unfollow(String),
    /// List the directory and peers again after a `presence_reset`: at once for a waiter
    /// (answered once applied), else within a couple of seconds (`uplink/presence.rs`).
    RefreshPresence(Option<oneshot::Sender<()>>),
}

impl std::fmt::Debug for UplinkCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UplinkCmd::Request { .. } => "Request",
            UplinkCmd::Queued(_) => "Queued",
            UplinkCmd::SessionOpen(_) => "SessionOpen",
            UplinkCmd::SessionUpdate(..) => "SessionUpdate",
            UplinkCmd::SessionClose(_) => "SessionClose",
            UplinkCmd::Receipt(_) => "Receipt",
            UplinkCmd::Frame(_) => "Frame",
            UplinkCmd::Follow(_) => "Follow",
            UplinkCmd::Unfollow(_) => "Unfollow",
            UplinkCmd::RefreshPresence(_) => "RefreshPresence",
        })
    }
}
