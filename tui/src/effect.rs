//! What `update` asks the outside world to do: calls to the agent, a join (which talks to a
//! broker, not the agent), the terminal bell, a clipboard write, a reconnect, following a
//! service's log, quitting.

use claudemesh_protocol::local::AgentCall;

/// One thing to do; its outcome comes back as an `Event`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A call to the agent; the reply comes back as `AgentEvent::Reply { tag }`.
    Call {
        tag: u64,
        call: AgentCall,
    },
    /// Join a mesh with a pasted invite, as `name` (what `claudemesh join` does); the reply
    /// (the mesh slug) comes back tagged `tag`.
    Join {
        tag: u64,
        invite: String,
        name: String,
    },
    /// Ring the terminal bell (a `now` message arrived).
    Bell,
    /// Put text on the clipboard (OSC 52, where the terminal allows it).
    Copy(String),
    /// Drop the agent connection and subscribe again (`r` while it is gone, or a gap in the
    /// event sequence).
    Reconnect,
    /// Follow this service's log (its new lines come back as `AgentEvent::ServiceLog`), ending
    /// the follow before; `None` ends it.
    Follow(Option<crate::state::Follow>),
    Quit,
}
