//! The one event enum the dashboard's loop is fed: keys, mouse, paste, resizes and ticks from
//! the terminal, and what the agent connection and the calls report.

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{LocalEvent, SubscribeReply};
use crossterm::event::{KeyEvent, MouseEvent};
use serde_json::Value;

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// Text pasted in one piece (bracketed paste).
    Paste(String),
    /// The terminal is now this many columns and rows.
    Resize(u16, u16),
    /// A second passed; the wall clock, Unix ms.
    Tick(u64),
    Agent(AgentEvent),
    /// SIGTERM, SIGHUP or SIGINT: leave now, terminal restored.
    Signal,
}

/// What the agent connection or a call reports.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Subscribed: the snapshot everything after applies to.
    Subscribed(Box<SubscribeReply>),
    /// One event of the subscription with its sequence number.
    Event { seq: u64, event: Box<LocalEvent> },
    /// The connection failed or ended; the next attempt is in `retry_in_ms`.
    Gone { error: String, retry_in_ms: u64 },
    /// New lines of the followed service's log (from the follow's own subscription).
    ServiceLog { mesh: String, name: String, lines: Vec<String> },
    /// The reply to the call tagged `tag`.
    Reply { tag: u64, result: Result<Value, CallError> },
}

/// A call that failed: the agent's error code, or none when the agent could not be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: Option<ErrorCode>,
    pub message: String,
}
