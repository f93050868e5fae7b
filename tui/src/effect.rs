//! What `update` asks the outside world to do: calls to the agent (some with a payload read
//! from a file first, since `update` does no I/O), a join (which talks to a broker, not the
//! agent), the terminal bell, a clipboard write, a reconnect, following a service's log,
//! quitting.

use std::path::PathBuf;

use claudemesh_protocol::local::{AgentCall, VaultSetParams};

/// One thing to do; its outcome comes back as an `Event`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A call to the agent; the reply comes back as `AgentEvent::Reply { tag }`.
    Call {
        tag: u64,
        call: AgentCall,
    },
    /// A call whose payload is read from a file first (see [`crate::files`]); its reply, or
    /// why the file could not be read or is not acceptable, comes back tagged `tag`.
    CallWithFile {
        tag: u64,
        call: FileCall,
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

/// A call built from a file the dashboard's process reads (paths relative to its working
/// directory; `~/` is the home directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCall {
    /// `vault_set` with the file's bytes as `value_b64` (`params` has no value).
    VaultSet { params: VaultSetParams, path: PathBuf },
    /// `skill_share` of a `SKILL.md` file, or of a directory with `SKILL.md` and text files.
    /// Empty `name` and `description` default to the path's stem and the front matter's.
    SkillShare { mesh: String, path: PathBuf, name: String, description: String, tags: Vec<String> },
}
